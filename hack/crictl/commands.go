package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	units "github.com/docker/go-units"
	pb "k8s.io/cri-api/pkg/apis/runtime/v1alpha2"
)

// labelsFlag collects repeated --label k=v into a selector map.
type labelsFlag map[string]string

func (l labelsFlag) String() string { return "" }
func (l labelsFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q is not key=value", s)
	}
	l[k] = v
	return nil
}

func init() {
	commands["version"] = &command{help: "Show the runtime version", run: cmdVersion}
	commands["info"] = &command{help: "Show the runtime status and configuration (JSON)", run: cmdInfo}
	commands["inspect"] = &command{usage: "CONTAINER-ID...", help: "Show container status (JSON)",
		run: func(a []string) error { return inspectEach(a, inspectContainer) }}
	commands["inspectp"] = &command{usage: "POD-ID...", help: "Show pod sandbox status (JSON)",
		run: func(a []string) error { return inspectEach(a, inspectPod) }}
	commands["inspecti"] = &command{usage: "IMAGE...", help: "Show image status (JSON); fails if the image is absent",
		run: func(a []string) error { return inspectEach(a, inspectImage) }}
	commands["stopp"] = &command{usage: "POD-ID...", help: "Stop pod sandboxes", run: cmdStopp}
	commands["stop"] = &command{usage: "CONTAINER-ID...", help: "Stop containers", run: cmdStop}
	commands["rm"] = &command{usage: "CONTAINER-ID...", help: "Remove containers", run: cmdRm}
	commands["pull"] = &command{usage: "IMAGE", help: "Pull an image", run: cmdPull}
	commands["rmi"] = &command{usage: "IMAGE...", help: "Remove images", run: cmdRmi}
	registerPods()
	registerPs()
	registerImages()
	registerRmp()
	registerLogs()
}

func need(args []string, what string) error {
	if len(args) == 0 {
		return fmt.Errorf("%s is required", what)
	}
	return nil
}

func cmdVersion(args []string) error {
	var v pb.VersionResponse
	if err := rt("Version", &pb.VersionRequest{Version: "v1alpha2"}, &v); err != nil {
		return err
	}
	fmt.Printf("Version:  %s\nRuntimeName:  %s\nRuntimeVersion:  %s\nRuntimeApiVersion:  %s\n",
		v.Version, v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion)
	return nil
}

// cmdInfo is what kubeadm uses to check that the runtime is up; like
// cri-tools it succeeds whenever the runtime answers.
func cmdInfo(args []string) error {
	var r pb.StatusResponse
	if err := rt("Status", &pb.StatusRequest{Verbose: true}, &r); err != nil {
		return err
	}
	return printStatus(r.Status, r.Info)
}

// inspectEach runs f for every argument, reporting all failures.
func inspectEach(args []string, f func(string) error) error {
	if err := need(args, "an ID or name"); err != nil {
		return err
	}
	var errs []string
	for _, a := range args {
		if err := f(a); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if errs != nil {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func inspectContainer(id string) error {
	var r pb.ContainerStatusResponse
	if err := rt("ContainerStatus", &pb.ContainerStatusRequest{ContainerId: id, Verbose: true}, &r); err != nil {
		return fmt.Errorf("getting status of container %q: %v", id, err)
	}
	return printStatus(r.Status, r.Info)
}

func inspectPod(id string) error {
	var r pb.PodSandboxStatusResponse
	if err := rt("PodSandboxStatus", &pb.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true}, &r); err != nil {
		return fmt.Errorf("getting status of pod sandbox %q: %v", id, err)
	}
	return printStatus(r.Status, r.Info)
}

func imageStatus(name string) (*pb.ImageStatusResponse, error) {
	var r pb.ImageStatusResponse
	if err := img("ImageStatus", &pb.ImageStatusRequest{Image: &pb.ImageSpec{Image: name}, Verbose: true}, &r, callTimeout()); err != nil {
		return nil, fmt.Errorf("getting status of image %q: %v", name, err)
	}
	if r.Image == nil {
		// An absent image is not an RPC error; kubeadm relies on the exit code.
		return nil, fmt.Errorf("no such image %q present", name)
	}
	return &r, nil
}

func inspectImage(name string) error {
	r, err := imageStatus(name)
	if err != nil {
		return err
	}
	return printStatus(r.Image, r.Info)
}

// forEach applies an RPC to every ID, printing done+ID on success and
// carrying on past failures (kubeadm reset wants as much removed as possible).
func forEach(ids []string, what, verb, done string, f func(id string) error) error {
	if err := need(ids, what); err != nil {
		return err
	}
	var errs []string
	for _, id := range ids {
		if err := f(id); err != nil {
			errs = append(errs, fmt.Sprintf("%s %q: %v", verb, id, err))
			continue
		}
		fmt.Printf("%s %s\n", done, id)
	}
	if errs != nil {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func stopPod(id string) error {
	return rt("StopPodSandbox", &pb.StopPodSandboxRequest{PodSandboxId: id}, &pb.StopPodSandboxResponse{})
}

func removePod(id string) error {
	return rt("RemovePodSandbox", &pb.RemovePodSandboxRequest{PodSandboxId: id}, &pb.RemovePodSandboxResponse{})
}

func cmdStopp(ids []string) error {
	return forEach(ids, "pod ID", "stopping pod sandbox", "Stopped sandbox", stopPod)
}

func registerRmp() {
	var force, all bool
	commands["rmp"] = &command{usage: "POD-ID...", help: "Remove pod sandboxes",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&force, "force", false, "stop the pod first")
			fs.BoolVar(&force, "f", false, "shorthand for --force")
			fs.BoolVar(&all, "all", false, "remove all pods")
			fs.BoolVar(&all, "a", false, "shorthand for --all")
		},
		run: func(ids []string) error {
			if all {
				pods, err := listPods(&pb.PodSandboxFilter{})
				if err != nil {
					return err
				}
				for _, p := range pods {
					ids = append(ids, p.Id)
				}
				if len(ids) == 0 {
					return nil
				}
			}
			return forEach(ids, "pod ID", "removing pod sandbox", "Removed sandbox", func(id string) error {
				if force {
					if err := stopPod(id); err != nil {
						return err
					}
				}
				return removePod(id)
			})
		}}
}

func cmdStop(ids []string) error {
	return forEach(ids, "container ID", "stopping container", "Stopped container", func(id string) error {
		return rt("StopContainer", &pb.StopContainerRequest{ContainerId: id, Timeout: 10}, &pb.StopContainerResponse{})
	})
}

func cmdRm(ids []string) error {
	return forEach(ids, "container ID", "removing container", "Removed container", func(id string) error {
		return rt("RemoveContainer", &pb.RemoveContainerRequest{ContainerId: id}, &pb.RemoveContainerResponse{})
	})
}

func cmdPull(args []string) error {
	if len(args) != 1 {
		return errors.New("exactly one image is required")
	}
	// Pulls take as long as they take unless --timeout says otherwise.
	var r pb.PullImageResponse
	if err := img("PullImage", &pb.PullImageRequest{Image: &pb.ImageSpec{Image: args[0]}}, &r, opts.timeout); err != nil {
		return fmt.Errorf("pulling image %q: %v", args[0], err)
	}
	fmt.Printf("Image is up to date for %s\n", r.ImageRef)
	return nil
}

func cmdRmi(args []string) error {
	return inspectEach(args, func(name string) error {
		st, err := imageStatus(name)
		if err != nil {
			return err
		}
		if err := img("RemoveImage", &pb.RemoveImageRequest{Image: &pb.ImageSpec{Image: st.Image.Id}}, &pb.RemoveImageResponse{}, callTimeout()); err != nil {
			return fmt.Errorf("removing image %q: %v", name, err)
		}
		for _, t := range st.Image.RepoTags {
			fmt.Printf("Deleted: %s\n", t)
		}
		if len(st.Image.RepoTags) == 0 {
			fmt.Printf("Deleted: %s\n", st.Image.Id)
		}
		return nil
	})
}

// --- listings -------------------------------------------------------------

func listPods(f *pb.PodSandboxFilter) ([]*pb.PodSandbox, error) {
	var r pb.ListPodSandboxResponse
	if err := rt("ListPodSandbox", &pb.ListPodSandboxRequest{Filter: f}, &r); err != nil {
		return nil, fmt.Errorf("listing pod sandboxes: %v", err)
	}
	return r.Items, nil
}

// matches is cri-tools' --name/--namespace semantics: a regexp, unanchored.
func matches(pattern, s string) bool {
	if pattern == "" {
		return true
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return strings.Contains(s, pattern)
	}
	return re.MatchString(s)
}

func newTable() *tabwriter.Writer { return tabwriter.NewWriter(os.Stdout, 20, 1, 3, ' ', 0) }

// shortID truncates an ID (without "sha256:") to 13 characters, like crictl.
func shortID(id string, noTrunc bool) string {
	if noTrunc {
		return id
	}
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 13 {
		id = id[:13]
	}
	return id
}

func ago(nanos int64) string {
	return units.HumanDuration(time.Since(time.Unix(0, nanos))) + " ago"
}

func registerPods() {
	var quiet, noTrunc bool
	var state, name, namespace, id, output string
	labels := labelsFlag{}
	commands["pods"] = &command{help: "List pod sandboxes",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&quiet, "quiet", false, "only print pod IDs")
			fs.BoolVar(&quiet, "q", false, "shorthand for --quiet")
			fs.StringVar(&state, "state", "", "filter by state: ready or notready")
			fs.StringVar(&state, "s", "", "shorthand for --state")
			fs.StringVar(&name, "name", "", "filter by pod name (regexp)")
			fs.StringVar(&namespace, "namespace", "", "filter by namespace (regexp)")
			fs.StringVar(&id, "id", "", "filter by pod ID")
			fs.Var(labels, "label", "filter by label key=value (repeatable)")
			fs.BoolVar(&noTrunc, "no-trunc", false, "do not truncate IDs")
			fs.StringVar(&output, "output", "", "output format: json (default: table)")
			fs.StringVar(&output, "o", "", "shorthand for --output")
		},
		run: func(args []string) error {
			f := &pb.PodSandboxFilter{Id: id, LabelSelector: labels}
			switch strings.ToLower(state) {
			case "":
			case "ready":
				f.State = &pb.PodSandboxStateValue{State: pb.PodSandboxState_SANDBOX_READY}
			case "notready":
				f.State = &pb.PodSandboxStateValue{State: pb.PodSandboxState_SANDBOX_NOTREADY}
			default:
				return fmt.Errorf("--state must be ready or notready, not %q", state)
			}
			items, err := listPods(f)
			if err != nil {
				return err
			}
			var pods []*pb.PodSandbox
			for _, p := range items {
				if p.Metadata != nil && (!matches(name, p.Metadata.Name) || !matches(namespace, p.Metadata.Namespace)) {
					continue
				}
				pods = append(pods, p)
			}
			sort.Slice(pods, func(i, j int) bool { return pods[i].CreatedAt > pods[j].CreatedAt })
			switch {
			case output == "json":
				return printJSON(map[string]interface{}{"items": jsonList(len(pods), func(i int) interface{} { return toJSON(pods[i]) })})
			case output != "" && output != "table":
				return fmt.Errorf("unsupported output format %q", output)
			case quiet:
				for _, p := range pods {
					fmt.Println(p.Id)
				}
				return nil
			}
			w := newTable()
			fmt.Fprintln(w, "POD ID\tCREATED\tSTATE\tNAME\tNAMESPACE\tATTEMPT\tRUNTIME")
			for _, p := range pods {
				md := p.Metadata
				if md == nil {
					md = &pb.PodSandboxMetadata{}
				}
				st := "NotReady"
				if p.State == pb.PodSandboxState_SANDBOX_READY {
					st = "Ready"
				}
				handler := p.RuntimeHandler
				if handler == "" {
					handler = "(default)"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", shortID(p.Id, noTrunc), ago(p.CreatedAt), st, md.Name, md.Namespace, md.Attempt, handler)
			}
			return w.Flush()
		}}
}

func jsonList(n int, f func(int) interface{}) []interface{} {
	out := make([]interface{}, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

var containerStates = map[string]pb.ContainerState{
	"created": pb.ContainerState_CONTAINER_CREATED,
	"running": pb.ContainerState_CONTAINER_RUNNING,
	"exited":  pb.ContainerState_CONTAINER_EXITED,
	"unknown": pb.ContainerState_CONTAINER_UNKNOWN,
}

func stateName(s pb.ContainerState) string {
	n := strings.TrimPrefix(s.String(), "CONTAINER_")
	return strings.ToUpper(n[:1]) + strings.ToLower(n[1:])
}

func registerPs() {
	var all, quiet, noTrunc bool
	var state, name, pod, id, output string
	labels := labelsFlag{}
	commands["ps"] = &command{help: "List containers (running ones unless -a)",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&all, "all", false, "show all containers")
			fs.BoolVar(&all, "a", false, "shorthand for --all")
			fs.BoolVar(&quiet, "quiet", false, "only print container IDs")
			fs.BoolVar(&quiet, "q", false, "shorthand for --quiet")
			fs.StringVar(&state, "state", "", "filter by state: created, running, exited, unknown")
			fs.StringVar(&name, "name", "", "filter by container name (regexp)")
			fs.StringVar(&pod, "pod", "", "filter by pod ID")
			fs.StringVar(&pod, "p", "", "shorthand for --pod")
			fs.StringVar(&id, "id", "", "filter by container ID")
			fs.Var(labels, "label", "filter by label key=value (repeatable)")
			fs.BoolVar(&noTrunc, "no-trunc", false, "do not truncate IDs")
			fs.StringVar(&output, "output", "", "output format: json (default: table)")
			fs.StringVar(&output, "o", "", "shorthand for --output")
		},
		run: func(args []string) error {
			f := &pb.ContainerFilter{Id: id, PodSandboxId: pod, LabelSelector: labels}
			switch {
			case state != "":
				s, ok := containerStates[strings.ToLower(state)]
				if !ok {
					return fmt.Errorf("unknown --state %q", state)
				}
				f.State = &pb.ContainerStateValue{State: s}
			case !all:
				f.State = &pb.ContainerStateValue{State: pb.ContainerState_CONTAINER_RUNNING}
			}
			var r pb.ListContainersResponse
			if err := rt("ListContainers", &pb.ListContainersRequest{Filter: f}, &r); err != nil {
				return fmt.Errorf("listing containers: %v", err)
			}
			var cs []*pb.Container
			for _, c := range r.Containers {
				if c.Metadata != nil && !matches(name, c.Metadata.Name) {
					continue
				}
				cs = append(cs, c)
			}
			sort.Slice(cs, func(i, j int) bool { return cs[i].CreatedAt > cs[j].CreatedAt })
			switch {
			case output == "json":
				return printJSON(map[string]interface{}{"containers": jsonList(len(cs), func(i int) interface{} { return toJSON(cs[i]) })})
			case output != "" && output != "table":
				return fmt.Errorf("unsupported output format %q", output)
			case quiet:
				for _, c := range cs {
					fmt.Println(c.Id)
				}
				return nil
			}
			w := newTable()
			fmt.Fprintln(w, "CONTAINER\tIMAGE\tCREATED\tSTATE\tNAME\tATTEMPT\tPOD ID")
			for _, c := range cs {
				md := c.Metadata
				if md == nil {
					md = &pb.ContainerMetadata{}
				}
				image := c.ImageRef
				if c.Image != nil && c.Image.Image != "" {
					image = c.Image.Image
				}
				if strings.HasPrefix(image, "sha256:") {
					image = shortID(image, noTrunc)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", shortID(c.Id, noTrunc), image, ago(c.CreatedAt),
					stateName(c.State), md.Name, md.Attempt, shortID(c.PodSandboxId, noTrunc))
			}
			return w.Flush()
		}}
}

func registerImages() {
	var quiet, noTrunc, digests bool
	var output string
	commands["images"] = &command{usage: "[REPOSITORY[:TAG]]", help: "List images",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&quiet, "quiet", false, "only print image IDs")
			fs.BoolVar(&quiet, "q", false, "shorthand for --quiet")
			fs.BoolVar(&noTrunc, "no-trunc", false, "do not truncate IDs")
			fs.BoolVar(&digests, "digests", false, "show digests")
			fs.StringVar(&output, "output", "", "output format: json (default: table)")
			fs.StringVar(&output, "o", "", "shorthand for --output")
		},
		run: func(args []string) error {
			req := &pb.ListImagesRequest{}
			if len(args) > 0 {
				req.Filter = &pb.ImageFilter{Image: &pb.ImageSpec{Image: args[0]}}
			}
			var r pb.ListImagesResponse
			if err := img("ListImages", req, &r, callTimeout()); err != nil {
				return fmt.Errorf("listing images: %v", err)
			}
			ims := r.Images
			sort.Slice(ims, func(i, j int) bool { return firstTag(ims[i]) < firstTag(ims[j]) })
			switch {
			case output == "json":
				return printJSON(map[string]interface{}{"images": jsonList(len(ims), func(i int) interface{} { return toJSON(ims[i]) })})
			case output != "" && output != "table":
				return fmt.Errorf("unsupported output format %q", output)
			case quiet:
				for _, im := range ims {
					fmt.Println(im.Id)
				}
				return nil
			}
			w := newTable()
			if digests {
				fmt.Fprintln(w, "IMAGE\tTAG\tDIGEST\tIMAGE ID\tSIZE")
			} else {
				fmt.Fprintln(w, "IMAGE\tTAG\tIMAGE ID\tSIZE")
			}
			for _, im := range ims {
				size := units.HumanSizeWithPrecision(float64(im.Size_), 3)
				digest := "<none>"
				if len(im.RepoDigests) > 0 {
					_, d, _ := strings.Cut(im.RepoDigests[0], "@")
					digest = shortID(d, noTrunc)
				}
				for _, rt := range repoTags(im) {
					if digests {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", rt[0], rt[1], digest, shortID(im.Id, noTrunc), size)
					} else {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", rt[0], rt[1], shortID(im.Id, noTrunc), size)
					}
				}
			}
			return w.Flush()
		}}
}

func firstTag(im *pb.Image) string {
	return repoTags(im)[0][0] + ":" + repoTags(im)[0][1]
}

// repoTags splits an image's names into (repository, tag) rows; an image
// known only by digest is shown as repo <none>, as crictl does.
func repoTags(im *pb.Image) [][2]string {
	var out [][2]string
	for _, t := range im.RepoTags {
		if i := strings.LastIndex(t, ":"); i > strings.LastIndex(t, "/") {
			out = append(out, [2]string{t[:i], t[i+1:]})
		} else {
			out = append(out, [2]string{t, "<none>"})
		}
	}
	if len(out) == 0 {
		for _, d := range im.RepoDigests {
			repo, _, _ := strings.Cut(d, "@")
			out = append(out, [2]string{repo, "<none>"})
		}
	}
	if len(out) == 0 {
		out = append(out, [2]string{"<none>", "<none>"})
	}
	return out
}
