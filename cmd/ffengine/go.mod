module github.com/flowfabric/flowfabric-go/cmd/ffengine

go 1.26.0

require github.com/flowfabric/flowfabric-go v0.0.0

require (
	github.com/robfig/cron/v3 v3.0.1 // indirect
	github.com/valkey-io/valkey-go v1.0.80 // indirect
	golang.org/x/sys v0.50.0 // indirect
)

replace github.com/flowfabric/flowfabric-go => ../..
