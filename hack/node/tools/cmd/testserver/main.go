// testserver is the payload of the real-node smoke image. As a server (no arguments) it
// answers HTTP with its pod name and writes each request's body to a file under DATA_DIR
// when asked; its subcommands let a test check the pod's view from inside (kubectl exec):
//
//	testserver                 serve on :8080 (PORT)
//	testserver get URL         print the body of GET URL, fail on a non-2xx status
//	testserver resolve NAME    print NAME's addresses from the pod's resolver
//	testserver write PATH TEXT write TEXT to PATH and print the file's owner and mode
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

func serve() error {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	name, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("request %s %s from %s\n", r.Method, r.URL.Path, r.RemoteAddr)
		fmt.Fprintf(w, "hello from %s\n", name)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	fmt.Printf("testserver %s listening on :%s as uid %d\n", name, port, os.Getuid())
	return http.ListenAndServe(":"+port, mux)
}

func get(url string) error {
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	_, err = os.Stdout.Write(body)
	return err
}

func resolve(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, name)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		fmt.Println(a)
	}
	return nil
}

func write(path, text string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return err
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	st := info.Sys().(*syscall.Stat_t)
	fmt.Printf("uid=%d gid=%d mode=%o\n", st.Uid, st.Gid, info.Mode().Perm())
	return nil
}

func main() {
	var err error
	args := os.Args[1:]
	switch {
	case len(args) == 0:
		err = serve()
	case args[0] == "get" && len(args) == 2:
		err = get(args[1])
	case args[0] == "resolve" && len(args) == 2:
		err = resolve(args[1])
	case args[0] == "write" && len(args) == 3:
		err = write(args[1], args[2])
	default:
		err = fmt.Errorf("usage: testserver [get URL | resolve NAME | write PATH TEXT]")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testserver:", err)
		os.Exit(1)
	}
}
