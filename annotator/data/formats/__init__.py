"""Dataset formats other than our COCO working file: writers and readers, without Qt.

=============  ==========================================  ======================
format         export (:mod:`annotator.data.export`)        import (:mod:`.importing`)
=============  ==========================================  ======================
yolo-seg       :mod:`.yolo` ``labels/*.txt`` + data.yaml    :func:`.yolo.read_yolo`
voc            :mod:`.voc` class/instance index PNGs        :func:`.voc.read_voc`
labelme        :mod:`.labelme` one JSON per image           :func:`.labelme.read_labelme`
masks          :mod:`.masks` mask PNGs + masks.csv          (export only)
coco           (``coco-rle``/``coco-polygon`` in export)    :func:`.cocoin.read_coco`
=============  ==========================================  ======================

Shared pieces: :mod:`.common` (output names, polygon tracing and joining,
overlap painting, PNGs), :mod:`.staging` (all-or-nothing folder writes with
backups), :mod:`.plan` (what a reader returns), :mod:`.importing` (adding a
plan to a :class:`~annotator.data.document.Dataset`).
"""
