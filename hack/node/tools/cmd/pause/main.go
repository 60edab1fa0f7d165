// pause holds a pod's namespaces open until it is told to stop: the sandbox ("pause")
// image of the test node, since registry.k8s.io cannot be reached from here.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	// As PID 1 of the pod it also reaps orphans, like the upstream pause.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGCHLD)
	go func() {
		for {
			var status syscall.WaitStatus
			if _, err := syscall.Wait4(-1, &status, 0, nil); err != nil {
				select {}
			}
		}
	}()
	<-stop
}
