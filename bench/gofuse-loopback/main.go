// A read-only loopback FUSE server on go-fuse, set up the way stargz-snapshotter serves a layer:
// the kernel may trust entries, attributes and failed lookups for 24 h, and file pages stay
// cached across opens (FOPEN_KEEP_CACHE). The benchmark (bench/peers.ts) builds it in GOPATH
// mode against Debian's golang-github-hanwen-go-fuse-dev and runs it as a peer of the product.
//
// Usage: gofuse-loopback SOURCE MOUNTPOINT. It serves until SIGTERM or SIGINT, then unmounts.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// keepCacheNode is the library's loopback node, except that an open keeps the page cache:
// layers never change, so there is nothing to invalidate.
type keepCacheNode struct {
	fs.LoopbackNode
}

func (n *keepCacheNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags)
	return fh, fuseFlags | fuse.FOPEN_KEEP_CACHE, errno
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gofuse-loopback SOURCE MOUNTPOINT")
		os.Exit(2)
	}
	source, mountpoint := os.Args[1], os.Args[2]

	root, err := fs.NewLoopbackRoot(source)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gofuse-loopback: %s: %v\n", source, err)
		os.Exit(1)
	}
	// Nodes made by later lookups carry keep_cache; the root is a directory and is never opened as a file.
	root.(*fs.LoopbackNode).RootData.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &keepCacheNode{fs.LoopbackNode{RootData: r}}
	}

	day := 24 * time.Hour
	server, err := fs.Mount(mountpoint, root, &fs.Options{
		EntryTimeout:    &day,
		AttrTimeout:     &day,
		NegativeTimeout: &day,
		MountOptions: fuse.MountOptions{
			AllowOther: true,
			FsName:     source,
			Name:       "gofuse-loopback",
			// Root needs no fusermount; read-only like every layer mount.
			DirectMount:      true,
			DirectMountFlags: syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV,
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "gofuse-loopback: mount %s: %v\n", mountpoint, err)
		os.Exit(1)
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		if err := server.Unmount(); err != nil {
			fmt.Fprintf(os.Stderr, "gofuse-loopback: unmount %s: %v\n", mountpoint, err)
			os.Exit(1)
		}
	}()
	server.Wait()
}
