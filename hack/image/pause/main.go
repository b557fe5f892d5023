// The sandbox ("pause") container of a real node's pods: it holds the pod's
// namespaces and waits until it is told to stop. Built static, so its image
// is one file.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
