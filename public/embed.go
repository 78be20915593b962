// Package public holds the files the server shows a browser: the live
// console (index.html) and the reusable browser client (longpoll.js),
// embedded in the binary so it runs with no files beside it.
package public

import "embed"

// FS holds index.html and longpoll.js at its root.
//
//go:embed index.html longpoll.js
var FS embed.FS
