{
  "targets": [
    {
      "target_name": "cvmfs_sys",
      "sources": ["native/cvmfs_sys.c", "native/idle_memory.cc"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "cflags_c": ["-std=gnu11"],
      "cflags_cc": ["-std=gnu++17"]
    }
  ]
}
