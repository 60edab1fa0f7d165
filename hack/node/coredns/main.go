// CoreDNS with only the plugins the test cluster's DNS uses. Linking every plugin (cloud
// DNS providers, etcd, ...) would more than double the cold build; this is CoreDNS's
// documented way of choosing plugins without its source tree's go generate step.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/whoami"
)

// The order of CoreDNS's own plugin.cfg, restricted to the plugins linked above.
var directives = []string{
	"ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes", "whoami",
}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}
