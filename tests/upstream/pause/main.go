// kubestrap's own pause program for the test images (not upstream's): the sandbox container's first
// process. It holds the pod's namespaces open by doing nothing: it sleeps until SIGINT or SIGTERM and
// reaps any child that is re-parented to it (it is PID 1 of the pod when the PID namespace is shared).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is stamped by tests/upstream/build.py (-X main.version=...).
var version = "dev"

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Println("kubestrap-pause", version)
		return
	}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			return
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
