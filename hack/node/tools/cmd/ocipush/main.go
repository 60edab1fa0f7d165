// ocipush builds a one-layer OCI image from files on this machine and pushes it to a
// registry over the Distribution HTTP API. The test node needs a few tiny images (the
// pause image, a static test server, busybox for the provisioner's helper pods) and no
// registry on the internet can be reached; building them reproducibly (fixed times and
// owners) makes the same inputs give the same digests, so a second push uploads nothing.
//
//	ocipush -registry http://127.0.0.1:5000 -image loraland/pause:v1 \
//	    -entrypoint /pause [-user 65535] [-env K=V]... /pause=/path/to/pause /bin/sh@busybox ...
//
// An argument DEST=SRC copies the host file SRC to DEST (mode 0755); DEST@TARGET makes a
// symlink. Parent directories are created as needed.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

type entry struct {
	dest, src, link string
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func parseEntries(args []string) ([]entry, error) {
	var out []entry
	for _, a := range args {
		if d, s, ok := strings.Cut(a, "="); ok {
			out = append(out, entry{dest: path.Clean("/" + d), src: s})
		} else if d, t, ok := strings.Cut(a, "@"); ok {
			out = append(out, entry{dest: path.Clean("/" + d), link: t})
		} else {
			return nil, fmt.Errorf("argument %q is neither DEST=SRC nor DEST@TARGET", a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].dest < out[j].dest })
	return out, nil
}

// layer returns the gzipped tar and the sha256 of the uncompressed tar (the diff ID).
func layer(entries []entry) (gz []byte, diffID string, err error) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	epoch := time.Unix(0, 0)
	dirs := map[string]bool{}
	var mkdirs func(string) error
	mkdirs = func(dir string) error {
		if dir == "/" || dir == "." || dirs[dir] {
			return nil
		}
		if err := mkdirs(path.Dir(dir)); err != nil {
			return err
		}
		dirs[dir] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(dir, "/") + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
	}
	// Always present: a writable /tmp, as most programs expect.
	if err := mkdirs("/tmp"); err != nil {
		return nil, "", err
	}
	for _, e := range entries {
		if err := mkdirs(path.Dir(e.dest)); err != nil {
			return nil, "", err
		}
		name := strings.TrimPrefix(e.dest, "/")
		if e.link != "" {
			err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: e.link, Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX})
			if err != nil {
				return nil, "", err
			}
			continue
		}
		data, err := os.ReadFile(e.src)
		if err != nil {
			return nil, "", err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, "", err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return out.Bytes(), digest(raw.Bytes()), nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int    `json:"size"`
}

func pushBlob(client *http.Client, base, repo string, blob []byte) error {
	d := digest(blob)
	resp, err := client.Head(fmt.Sprintf("%s/v2/%s/blobs/%s", base, repo, d))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	resp, err = client.Post(fmt.Sprintf("%s/v2/%s/blobs/uploads/", base, repo), "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("starting upload of %s: %s", d, resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return err
	}
	loc = resp.Request.URL.ResolveReference(loc)
	q := loc.Query()
	q.Set("digest", d)
	loc.RawQuery = q.Encode()
	req, _ := http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(blob))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = client.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("uploading %s: %s: %s", d, resp.Status, body)
	}
	return nil
}

func run() error {
	registry := flag.String("registry", "", "registry base URL, e.g. http://127.0.0.1:5000")
	image := flag.String("image", "", "repository:tag to push")
	user := flag.String("user", "", "the image's default user")
	var entrypoint, env multi
	flag.Var(&entrypoint, "entrypoint", "entrypoint word (repeat for more)")
	flag.Var(&env, "env", "K=V environment (repeat)")
	flag.Parse()
	repo, tag, ok := strings.Cut(*image, ":")
	if *registry == "" || !ok {
		return fmt.Errorf("-registry and -image REPO:TAG are required")
	}
	entries, err := parseEntries(flag.Args())
	if err != nil {
		return err
	}
	gz, diffID, err := layer(entries)
	if err != nil {
		return err
	}
	cfgEnv := append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, env...)
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": []string(entrypoint), "Env": cfgEnv, "User": *user, "WorkingDir": "/"},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor{"application/vnd.oci.image.config.v1+json", digest(config), len(config)},
		"layers":        []descriptor{{"application/vnd.oci.image.layer.v1.tar+gzip", digest(gz), len(gz)}},
	})
	client := &http.Client{Timeout: 60 * time.Second}
	base := strings.TrimSuffix(*registry, "/")
	for _, blob := range [][]byte{gz, config} {
		if err := pushBlob(client, base, repo, blob); err != nil {
			return err
		}
	}
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v2/%s/manifests/%s", base, repo, tag), bytes.NewReader(manifest))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("pushing manifest %s: %s: %s", *image, resp.Status, body)
	}
	fmt.Printf("%s@%s\n", *image, digest(manifest))
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ocipush:", err)
		os.Exit(1)
	}
}
