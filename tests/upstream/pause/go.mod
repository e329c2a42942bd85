// kubestrap's own pause program (main.go); no dependencies.
module kubestrap.test/upstream/pause

go 1.26.0
