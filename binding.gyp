{
  "targets": [
    {
      "target_name": "cvmfs_sys",
      "sources": ["native/cvmfs_sys.c"],
      "cflags": ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"]
    }
  ]
}
