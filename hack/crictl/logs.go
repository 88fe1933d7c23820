package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	pb "k8s.io/cri-api/pkg/apis/runtime/v1alpha2"
)

func registerLogs() {
	var tail int
	var follow, timestamps bool
	commands["logs"] = &command{usage: "CONTAINER-ID", help: "Print a container's log (read from its CRI log file)",
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&tail, "tail", -1, "only the last N lines (-1: all)")
			fs.BoolVar(&follow, "follow", false, "keep printing new lines while the container runs")
			fs.BoolVar(&follow, "f", false, "shorthand for --follow")
			fs.BoolVar(&timestamps, "timestamps", false, "show timestamps")
			fs.BoolVar(&timestamps, "t", false, "shorthand for --timestamps")
		},
		run: func(args []string) error {
			if len(args) != 1 {
				return errors.New("exactly one container ID is required")
			}
			return logs(args[0], tail, follow, timestamps)
		}}
}

func containerStatus(id string) (*pb.ContainerStatus, error) {
	var r pb.ContainerStatusResponse
	if err := rt("ContainerStatus", &pb.ContainerStatusRequest{ContainerId: id}, &r); err != nil {
		return nil, fmt.Errorf("getting status of container %q: %v", id, err)
	}
	if r.Status == nil {
		return nil, fmt.Errorf("no such container %q", id)
	}
	return r.Status, nil
}

// logs reads the file the runtime writes for the kubelet, in the CRI log
// format "<RFC3339Nano time> <stdout|stderr> <F|P> <message>" (P marks a
// partial line, continued by the next record).
func logs(id string, tail int, follow, timestamps bool) error {
	st, err := containerStatus(id)
	if err != nil {
		return err
	}
	if st.LogPath == "" {
		return fmt.Errorf("container %q has no log path", id)
	}
	running := func() bool {
		st, err := containerStatus(id)
		return err == nil && st.State == pb.ContainerState_CONTAINER_RUNNING
	}
	if !follow {
		running = nil
	}
	return printLog(st.LogPath, tail, timestamps, running)
}

// printLog prints the last tail records of a CRI log file (all if tail < 0),
// then, if running is set, keeps printing new records while it returns true.
func printLog(path string, tail int, timestamps bool, running func() bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()

	r := bufio.NewReader(f)
	var lines []string
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF {
			if running == nil {
				if line != "" {
					lines = append(lines, line)
				}
			} else if _, err := f.Seek(-int64(len(line)), io.SeekCurrent); err == nil {
				// Leave a record still being written to the follow loop.
				r.Reset(f)
			}
			break
		}
		if err != nil {
			return err
		}
		lines = append(lines, line)
	}
	if tail >= 0 && len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	for _, l := range lines {
		printRecord(l, timestamps)
	}
	if running == nil {
		return nil
	}
	pending := ""
	lastCheck := time.Now()
	for {
		line, err := r.ReadString('\n')
		pending += line
		if err == nil {
			printRecord(pending, timestamps)
			pending = ""
			continue
		}
		if err != io.EOF {
			return err
		}
		// Stop following once the container is no longer running.
		if time.Since(lastCheck) > time.Second {
			lastCheck = time.Now()
			if !running() {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func printRecord(rec string, timestamps bool) {
	rec = strings.TrimSuffix(rec, "\n")
	parts := strings.SplitN(rec, " ", 4)
	if len(parts) < 3 {
		fmt.Println(rec) // not CRI format; print as is
		return
	}
	msg := ""
	if len(parts) == 4 {
		msg = parts[3]
	}
	if parts[2] != "P" {
		msg += "\n"
	}
	if timestamps {
		msg = parts[0] + " " + msg
	}
	out := os.Stdout
	if parts[1] == "stderr" {
		out = os.Stderr
	}
	fmt.Fprint(out, msg)
}
