package client_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/longpoll/longpoll/internal/testserver"
)

// serverURL and secretURL are servers shared by the examples (which cannot
// start their own): an open one, and one that requires a connect token
// signed with exampleSecret.
var serverURL, secretURL string

const exampleSecret = "example-secret-of-at-least-32-bytes!"

func TestMain(m *testing.M) {
	open, err := testserver.Launch(nil, "--heartbeat-interval", "0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	secret, err := testserver.Launch([]string{"LONGPOLL_CONNECT_SECRET=" + exampleSecret}, "--heartbeat-interval", "0")
	if err != nil {
		open.Close()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serverURL, secretURL = open.URL, secret.URL
	testserver.Main(m) // kills both when the tests are done
}

// signHS256 makes the JWT a backend would issue for --connect-secret.
func signHS256(secret string, claims map[string]any) string {
	return testserver.SignHS256(secret, claims)
}
