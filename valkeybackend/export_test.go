package valkeybackend

// ParseArrivalForTest exposes parseArrival to the external tests.
var ParseArrivalForTest = parseArrival
