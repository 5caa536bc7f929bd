"""Read Caffe .caffemodel files without Caffe and map their blobs onto `nets`."""
