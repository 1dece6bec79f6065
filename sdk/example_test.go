package sdk_test

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// An execution id carries its partition: mint ids on a partition with
// NewExecutionID and read the partition back with Partition, never recompute it.
func ExampleExecutionID() {
	id := sdk.NewExecutionID(17)
	p, err := id.Partition()
	fmt.Println(p, err)
	fmt.Println(id.Tag(), strings.HasPrefix(id.String(), "{p:17}:"))

	parsed, err := sdk.ParseExecutionID("{p:3}:0b7c6f7e-2a51-4c1e-9d3a-5f0e8b1c2d3e")
	fmt.Println(parsed, err)

	_, err = sdk.ParseExecutionID("{p:3}:not-a-uuid")
	fmt.Println(errors.Is(err, sdk.ErrValidation), sdk.CodeOf(err))
	// Output:
	// 17 <nil>
	// {p:17} true
	// {p:3}:0b7c6f7e-2a51-4c1e-9d3a-5f0e8b1c2d3e <nil>
	// true invalid_input
}

func ExampleNewExecutionID() {
	const partitions = 4
	for p := range partitions {
		id := sdk.NewExecutionID(p)
		got, _ := id.Partition()
		fmt.Println(id.Tag(), got, id.Validate() == nil)
	}
	// Output:
	// {p:0} 0 true
	// {p:1} 1 true
	// {p:2} 2 true
	// {p:3} 3 true
}

func ExampleExecutionID_Partition() {
	for _, s := range []string{
		"{p:0}:00000000-0000-4000-8000-000000000000",
		"{p:1023}:00000000-0000-4000-8000-000000000000",
		"{p:01}:00000000-0000-4000-8000-000000000000",
		"abc",
	} {
		p, err := sdk.ExecutionID(s).Partition()
		fmt.Println(p, err != nil)
	}
	// Output:
	// 0 false
	// 1023 false
	// 0 true
	// 0 true
}

// A worker can persist the handle of a held lease and decode it later, for
// example to finish the execution from another process.
func ExampleHandle_MarshalBinary() {
	h := sdk.Handle{
		Backend:          sdk.BackendValkey,
		Kind:             sdk.HandleFresh,
		ExecutionID:      "{p:5}:0b7c6f7e-2a51-4c1e-9d3a-5f0e8b1c2d3e",
		Lane:             "emails",
		AttemptIndex:     0,
		AttemptID:        "c1d2e3f4-a5b6-4c7d-9e8f-0a1b2c3d4e5f",
		LeaseID:          "7d3f1a2b-9c4e-4f5a-8b6c-1d2e3f4a5b6c",
		Epoch:            1,
		LeaseTTL:         30 * time.Second,
		WorkerInstanceID: "worker-7",
	}
	b, err := h.MarshalBinary()
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d bytes, header %q\n", len(b), b[:2])

	back, err := sdk.DecodeHandle(b)
	fmt.Println(err, back == h)
	fmt.Println(back.ExecutionID, back.Lane, back.Epoch, back.LeaseTTL)

	_, err = sdk.DecodeHandle(b[:len(b)-1])
	fmt.Println(errors.Is(err, sdk.ErrMalformedHandle))
	// Output:
	// 143 bytes, header "FH"
	// <nil> true
	// {p:5}:0b7c6f7e-2a51-4c1e-9d3a-5f0e8b1c2d3e emails 1 30s
	// true
}
