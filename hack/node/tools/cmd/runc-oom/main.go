// runc-oom runs runc after raising a negative process.oomScoreAdj in the bundle to 0.
//
// Why: the kubelet asks for oom_score_adj -998 on every pod sandbox, and lowering an
// oom_score_adj needs CAP_SYS_RESOURCE, which this VM drops even for root; runc then dies
// with "can't get final child's PID from pipe: EOF". A real node needs none of this. The
// test node's containerd names this program as the runc binary (runtime option BinaryName).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

func bundleArg(args []string) string {
	for i, a := range args {
		switch {
		case (a == "--bundle" || a == "-b") && i+1 < len(args):
			return args[i+1]
		case len(a) > 9 && a[:9] == "--bundle=":
			return a[9:]
		}
	}
	return ""
}

func clampOOMScoreAdj(bundle string) error {
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		return err
	}
	process, ok := spec["process"].(map[string]any)
	if !ok {
		return nil
	}
	adj, ok := process["oomScoreAdj"].(float64)
	if !ok || adj >= 0 {
		return nil
	}
	process["oomScoreAdj"] = 0
	out, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}

func realRunc() string {
	if p := os.Getenv("LORALAND_REAL_RUNC"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "/usr/sbin/runc"
}

func main() {
	if bundle := bundleArg(os.Args[1:]); bundle != "" {
		if err := clampOOMScoreAdj(bundle); err != nil {
			fmt.Fprintf(os.Stderr, "runc-oom: %v\n", err)
			os.Exit(1)
		}
	}
	runc := realRunc()
	args := append([]string{runc}, os.Args[1:]...)
	if err := syscall.Exec(runc, args, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "runc-oom: exec %s: %v\n", runc, err)
		os.Exit(1)
	}
}
