"""Raw face images -> prepared Parquet (CLAHE, face detection, 160x160 crops, 68 landmarks).

Importing this package is cheap: Ray, dlib and OpenCV are imported only by the modules that use
them, so the training core can read prepared data on a machine that has none of them.
"""
