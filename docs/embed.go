// Package docs holds longpoll's API description: OpenAPI is docs/openapi.yaml
// (OpenAPI 3.1), embedded so the server can serve it at GET /openapi.yaml.
// docs/API.md, beside it, is the same contract in prose.
package docs

import _ "embed"

// OpenAPI is the text of docs/openapi.yaml. A test checks real requests
// and responses of the server against it; do not modify it at run time.
//
//go:embed openapi.yaml
var OpenAPI []byte
