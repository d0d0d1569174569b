// The chart's uninstall hook waits with this for its clean-up DaemonSet (charts/weft,
// uninstall.cleanup): the standard library only, so the image gains one small binary
// rather than kubectl.
module weft.example/e2e/image/daemonset-wait

go 1.25.0
