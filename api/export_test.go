package api

// QueryValue exports queryValue to the tests.
var QueryValue = queryValue
