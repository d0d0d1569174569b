// daemonset-wait waits until every pod a DaemonSet schedules is updated and ready, as
// its own ServiceAccount sees it through the in-cluster apiserver, then exits 0.
//
//	daemonset-wait NAMESPACE NAME
//
// Helm waits for hook Jobs to finish but not for hook DaemonSets; the chart's
// uninstall clean-up runs as a DaemonSet (one pod per node, its work done in an init
// container, so Ready means done) and a hook Job running this, so `helm uninstall`
// returns only once every node is clean. It gives up when the Job's deadline ends it.
// The apiserver's certificate is verified against the ServiceAccount's CA.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

type daemonSet struct {
	Metadata struct {
		Generation int64 `json:"generation"`
	} `json:"metadata"`
	Status struct {
		ObservedGeneration     int64 `json:"observedGeneration"`
		DesiredNumberScheduled int64 `json:"desiredNumberScheduled"`
		UpdatedNumberScheduled int64 `json:"updatedNumberScheduled"`
		NumberReady            int64 `json:"numberReady"`
	} `json:"status"`
}

// done reports whether the rollout is complete, and a progress line.
func (d daemonSet) done() (bool, string) {
	s := d.Status
	progress := fmt.Sprintf("%d of %d nodes done", s.NumberReady, s.DesiredNumberScheduled)
	return s.ObservedGeneration >= d.Metadata.Generation && s.DesiredNumberScheduled > 0 &&
		s.UpdatedNumberScheduled == s.DesiredNumberScheduled &&
		s.NumberReady == s.DesiredNumberScheduled, progress
}

func client() (*http.Client, string, error) {
	ca, err := os.ReadFile(serviceAccountDir + "/ca.crt")
	if err != nil {
		return nil, "", err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, "", fmt.Errorf("%s/ca.crt holds no certificate", serviceAccountDir)
	}
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, "", fmt.Errorf("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set")
	}
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return &http.Client{Transport: transport, Timeout: 10 * time.Second}, "https://" + net.JoinHostPort(host, port), nil
}

func get(c *http.Client, url string) (daemonSet, error) {
	var d daemonSet
	// Read each time: the kubelet rotates the projected token.
	token, err := os.ReadFile(serviceAccountDir + "/token")
	if err != nil {
		return d, err
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return d, err
	}
	req.Header.Set("Authorization", "Bearer "+string(token))
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return d, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return d, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return d, json.NewDecoder(resp.Body).Decode(&d)
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: daemonset-wait NAMESPACE NAME")
		os.Exit(2)
	}
	namespace, name := os.Args[1], os.Args[2]
	c, base, err := client()
	if err != nil {
		fmt.Fprintln(os.Stderr, "daemonset-wait:", err)
		os.Exit(1)
	}
	url := fmt.Sprintf("%s/apis/apps/v1/namespaces/%s/daemonsets/%s", base, namespace, name)
	last := ""
	for {
		d, err := get(c, url)
		if err != nil {
			fmt.Fprintln(os.Stderr, "daemonset-wait:", err)
		} else {
			done, progress := d.done()
			if progress != last {
				fmt.Printf("daemonset %s/%s: %s\n", namespace, name, progress)
				last = progress
			}
			if done {
				return
			}
		}
		time.Sleep(2 * time.Second)
	}
}
