module github.com/flowfabric/flowfabric-go

go 1.26.0

require (
	github.com/robfig/cron/v3 v3.0.1
	github.com/valkey-io/valkey-go v1.0.80
)

require golang.org/x/sys v0.50.0 // indirect
