//go:build tools

// Package tools records the programs this module builds, so that
// `go mod tidy` keeps every module they need in go.mod and go.sum.
// hack/build-controlplane.sh builds them with `go build`; nothing imports
// this file otherwise (the "tools" build tag keeps it out of every build).
package tools

import (
	_ "go.etcd.io/etcd/server/v3"                     // etcd
	_ "k8s.io/kubernetes/cmd/kube-apiserver"          // kube-apiserver
	_ "k8s.io/kubernetes/cmd/kube-controller-manager" // kube-controller-manager
	_ "k8s.io/kubernetes/cmd/kube-scheduler"          // kube-scheduler
)
