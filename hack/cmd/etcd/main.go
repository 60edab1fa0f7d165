// Command etcd is the upstream etcd server, built from go.etcd.io/etcd/server/v3
// because etcd's own modules cannot be `go install`ed (their go.mod files use
// relative replace directives).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
