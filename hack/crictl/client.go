package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/golang/protobuf/jsonpb"
	"github.com/golang/protobuf/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pb "k8s.io/cri-api/pkg/apis/runtime/v1alpha2"
)

const defaultEndpoint = "unix:///run/containerd/containerd.sock"

// client talks CRI over gRPC directly rather than through the kubelet's
// remote package, which logs every failure through klog to stderr. Calls go
// through conn.Invoke with a service prefix so that the same v1alpha2
// message types also work against runtimes that only serve runtime.v1 (the
// two APIs are wire-identical for everything used here).
type client struct {
	conn   *grpc.ClientConn
	prefix string // "/runtime.v1alpha2." or "/runtime.v1."
}

var runtimeClient, imageClient *client

func dial(endpoint string) (*client, error) {
	network, addr, err := parseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	timeout := opts.timeout
	if timeout == 0 {
		timeout = 2 * time.Second // cri-tools' default
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := grpc.DialContext(ctx, addr,
		grpc.WithInsecure(),
		// Block and fail on a refused/missing socket right away, so the error
		// names the real cause instead of "context deadline exceeded".
		grpc.WithBlock(), grpc.FailOnNonTempDialError(true),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, a)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16*1024*1024)))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %v", endpoint, err)
	}
	c := &client{conn: conn, prefix: "/runtime.v1alpha2."}
	// Probe the API version once: containerd 1.6 serves both, newer runtimes
	// only v1.
	var v pb.VersionResponse
	err = c.call("RuntimeService/Version", &pb.VersionRequest{Version: "v1alpha2"}, &v, timeout)
	if status.Code(err) == codes.Unimplemented {
		c.prefix = "/runtime.v1."
		err = c.call("RuntimeService/Version", &pb.VersionRequest{Version: "v1"}, &v, timeout)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("talking to %s: %v", endpoint, errDesc(err))
	}
	return c, nil
}

// parseEndpoint accepts unix:///path, tcp://host:port and, like cri-tools,
// a bare socket path.
func parseEndpoint(endpoint string) (network, addr string, err error) {
	if strings.HasPrefix(endpoint, "/") {
		return "unix", endpoint, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", "", fmt.Errorf("bad endpoint %q: %v", endpoint, err)
	}
	switch u.Scheme {
	case "unix":
		return "unix", u.Path, nil
	case "tcp":
		return "tcp", u.Host, nil
	}
	return "", "", fmt.Errorf("bad endpoint %q: only unix:// and tcp:// are supported", endpoint)
}

// call performs one RPC; timeout 0 means no deadline.
func (c *client) call(method string, req, resp interface{}, timeout time.Duration) error {
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	return c.conn.Invoke(ctx, c.prefix+method, req, resp)
}

// callTimeout is the deadline for ordinary calls: --timeout if given, else
// generous enough for stopping a pod.
func callTimeout() time.Duration {
	if opts.timeout > 0 {
		return opts.timeout
	}
	return 2 * time.Minute
}

// rt and img call the runtime and image services, connecting on first use.
func rt(method string, req, resp interface{}) error {
	if runtimeClient == nil {
		c, err := dial(opts.runtimeEndpoint)
		if err != nil {
			return err
		}
		runtimeClient = c
	}
	return errDesc(runtimeClient.call("RuntimeService/"+method, req, resp, callTimeout()))
}

func img(method string, req, resp interface{}, timeout time.Duration) error {
	if imageClient == nil {
		if opts.imageEndpoint == opts.runtimeEndpoint && runtimeClient != nil {
			imageClient = runtimeClient
		} else {
			c, err := dial(opts.imageEndpoint)
			if err != nil {
				return err
			}
			imageClient = c
		}
	}
	return errDesc(imageClient.call("ImageService/"+method, req, resp, timeout))
}

// errDesc strips gRPC's "rpc error: code = X desc =" wrapping, leaving the
// runtime's own message (as cri-tools prints it).
func errDesc(err error) error {
	if s, ok := status.FromError(err); ok && err != nil {
		return fmt.Errorf("%s", s.Message())
	}
	return err
}

// toJSON renders a CRI message the way cri-tools does (jsonpb: camelCase
// field names, enum names, zero values included).
func toJSON(m proto.Message) json.RawMessage {
	s, err := (&jsonpb.Marshaler{EmitDefaults: true}).MarshalToString(m)
	if err != nil {
		b, _ := json.Marshal(m) // gogo struct tags as a fallback
		return b
	}
	return json.RawMessage(s)
}

// printStatus prints {"status": ..., <verbose info keys>...} like cri-tools'
// info/inspect commands; info values that are JSON are embedded as such.
func printStatus(st proto.Message, info map[string]string) error {
	out := map[string]interface{}{}
	if st != nil {
		out["status"] = toJSON(st)
	}
	for k, v := range info {
		if json.Valid([]byte(v)) {
			out[k] = json.RawMessage(v)
		} else {
			out[k] = v
		}
	}
	return printJSON(out)
}

func printJSON(v interface{}) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}
