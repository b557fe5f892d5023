// egpu-fake-dra-plugin: a kubelet DRA plugin for a real node. It publishes the
// node's fake GPUs as one ResourceSlice of driver gpu.egpu.io (the shape
// operator/egpu/domain/dra.py parses, as the simulated driver does), creates the
// DeviceClass gpu.egpu.io when missing, and answers the kubelet's
// NodePrepareResources / NodeUnprepareResources through the Kubernetes helper
// library k8s.io/dynamic-resource-allocation/kubeletplugin.
//
// There are no devices to set up: preparing a claim records, in a file per claim
// under -state-dir, which devices the claim's allocation names and which gRPC
// method (API version) the kubelet called, and returns one CDI device id per
// device; with -cdi-dir it also writes a CDI spec per claim there, which the
// runtime applies to the claim's containers (environment variables naming the
// GPUs' uuids), and removes it at unprepare. A device already held by another prepared claim is refused, as a real
// driver must. Built by hack/build-binaries.sh in the Kubernetes module workspace.
package main

import (
	"context"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// The same names as the simulated driver (operator/egpu/domain/dra.py).
const (
	driverName  = "gpu.egpu.io"
	deviceClass = "gpu.egpu.io"
	// CDI ids are "<vendor>/<class>=<name>"; the name is unique per claim, as
	// the helper library asks, so that a runtime's cache never mixes claims up.
	cdiKind = "egpu.io/gpu"
)

// record is what a prepared claim leaves in <state-dir>/prepared/<uid>.json.
type record struct {
	Namespace string         `json:"namespace"`
	Name      string         `json:"name"`
	UID       string         `json:"uid"`
	Method    string         `json:"method"` // the gRPC method the kubelet called
	Devices   []recordDevice `json:"devices"`
	Prepared  time.Time      `json:"prepared"`
}

type recordDevice struct {
	Request string `json:"request"`
	Pool    string `json:"pool"`
	Device  string `json:"device"`
	CDI     string `json:"cdi"`
	UUID    string `json:"uuid"`
}

type driver struct {
	node     string
	devices  map[string]string // name -> uuid
	stateDir string
	cdiDir   string // where the runtime reads CDI specs; "" writes none
	cancel   context.CancelCauseFunc

	mu     sync.Mutex
	method string // the last DRA gRPC method called (the helper serializes calls)
}

func (d *driver) preparedDir() string { return filepath.Join(d.stateDir, "prepared") }

// event appends one JSON line to <state-dir>/events.jsonl and logs it.
func (d *driver) event(fields map[string]any) {
	fields["time"] = time.Now().UTC().Format(time.RFC3339Nano)
	line, _ := json.Marshal(fields)
	log.Printf("%s", line)
	f, err := os.OpenFile(filepath.Join(d.stateDir, "events.jsonl"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		log.Printf("events: %v", err)
		return
	}
	defer f.Close()
	_, _ = f.Write(append(line, '\n'))
}

// heldByOthers maps each device of another prepared claim to that claim.
func (d *driver) heldByOthers(uid types.UID) (map[string]string, error) {
	held := map[string]string{}
	entries, err := os.ReadDir(d.preparedDir())
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.Name() == string(uid)+".json" || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var r record
		raw, err := os.ReadFile(filepath.Join(d.preparedDir(), e.Name()))
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		for _, dev := range r.Devices {
			held[dev.Device] = r.Namespace + "/" + r.Name
		}
	}
	return held, nil
}

func (d *driver) PrepareResourceClaims(_ context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	d.mu.Lock()
	method := d.method
	d.mu.Unlock()
	out := map[types.UID]kubeletplugin.PrepareResult{}
	for _, claim := range claims {
		r, err := d.prepare(claim, method)
		if err != nil {
			d.event(map[string]any{"op": "prepare-failed", "claim": claim.Namespace + "/" + claim.Name, "uid": claim.UID, "error": err.Error()})
			out[claim.UID] = kubeletplugin.PrepareResult{Err: err}
			continue
		}
		result := kubeletplugin.PrepareResult{}
		for _, dev := range r.Devices {
			result.Devices = append(result.Devices, kubeletplugin.Device{
				Requests:     []string{dev.Request},
				PoolName:     dev.Pool,
				DeviceName:   dev.Device,
				CDIDeviceIDs: []string{dev.CDI},
			})
		}
		out[claim.UID] = result
		d.event(map[string]any{"op": "prepare", "claim": r.Namespace + "/" + r.Name, "uid": r.UID, "method": method, "devices": r.Devices})
	}
	return out, nil
}

func (d *driver) prepare(claim *resourceapi.ResourceClaim, method string) (*record, error) {
	if claim.Status.Allocation == nil {
		return nil, errors.New("claim is not allocated")
	}
	r := &record{Namespace: claim.Namespace, Name: claim.Name, UID: string(claim.UID), Method: method, Prepared: time.Now().UTC()}
	for _, res := range claim.Status.Allocation.Devices.Results {
		if res.Driver != driverName {
			continue
		}
		uuid, ok := d.devices[res.Device]
		if res.Pool != d.node || !ok {
			return nil, fmt.Errorf("device %s/%s is not one of node %s's", res.Pool, res.Device, d.node)
		}
		r.Devices = append(r.Devices, recordDevice{
			Request: res.Request,
			Pool:    res.Pool,
			Device:  res.Device,
			CDI:     fmt.Sprintf("%s=%s-%s", cdiKind, claim.UID, res.Device),
			UUID:    uuid,
		})
	}
	sort.Slice(r.Devices, func(i, j int) bool { return r.Devices[i].Device < r.Devices[j].Device })
	held, err := d.heldByOthers(claim.UID)
	if err != nil {
		return nil, err
	}
	for _, dev := range r.Devices {
		if other, ok := held[dev.Device]; ok {
			return nil, fmt.Errorf("device %s is already prepared for claim %s", dev.Device, other)
		}
	}
	if err := d.writeCDISpec(r); err != nil {
		return nil, err
	}
	return r, writeJSON(filepath.Join(d.preparedDir(), string(claim.UID)+".json"), r)
}

// writeJSON writes whole, then renames: a reader never sees half a file.
func writeJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path+".tmp", raw, 0o644); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

func (d *driver) cdiSpecPath(uid string) string {
	return filepath.Join(d.cdiDir, "egpu.io-gpu-"+uid+".json")
}

// writeCDISpec tells the runtime what a container of the claim gets, as a GPU
// driver's spec would: NVIDIA_VISIBLE_DEVICES lists the claim's GPU uuids (a
// spec-wide edit, applied once whichever of its devices a container names) and
// each device sets EGPU_CDI_DEVICE_<index> to its own uuid.
func (d *driver) writeCDISpec(r *record) error {
	if d.cdiDir == "" {
		return nil
	}
	type edits struct {
		Env []string `json:"env"`
	}
	type device struct {
		Name           string `json:"name"`
		ContainerEdits edits  `json:"containerEdits"`
	}
	uuids := make([]string, 0, len(r.Devices))
	devs := make([]device, 0, len(r.Devices))
	for _, dev := range r.Devices {
		uuids = append(uuids, dev.UUID)
		index := strings.TrimPrefix(dev.Device, "gpu-")
		devs = append(devs, device{
			Name:           strings.SplitN(dev.CDI, "=", 2)[1],
			ContainerEdits: edits{Env: []string{"EGPU_CDI_DEVICE_" + index + "=" + dev.UUID}},
		})
	}
	spec := map[string]any{
		"cdiVersion":     "0.5.0",
		"kind":           cdiKind,
		"containerEdits": edits{Env: []string{"NVIDIA_VISIBLE_DEVICES=" + strings.Join(uuids, ",")}},
		"devices":        devs,
	}
	return writeJSON(d.cdiSpecPath(r.UID), spec)
}

func (d *driver) UnprepareResourceClaims(_ context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	d.mu.Lock()
	method := d.method
	d.mu.Unlock()
	out := map[types.UID]error{}
	for _, claim := range claims {
		path := filepath.Join(d.preparedDir(), string(claim.UID)+".json")
		err := os.Remove(path)
		if errors.Is(err, os.ErrNotExist) {
			err = nil // unprepare is idempotent
		}
		if d.cdiDir != "" {
			if cdiErr := os.Remove(d.cdiSpecPath(string(claim.UID))); cdiErr != nil && !errors.Is(cdiErr, os.ErrNotExist) && err == nil {
				err = cdiErr
			}
		}
		out[claim.UID] = err
		d.event(map[string]any{"op": "unprepare", "claim": claim.Namespace + "/" + claim.Name, "uid": claim.UID, "method": method})
	}
	return out, nil
}

func (d *driver) HandleError(_ context.Context, err error, msg string) {
	log.Printf("%s: %v", msg, err)
	if !errors.Is(err, kubeletplugin.ErrRecoverable) {
		d.cancel(fmt.Errorf("%s: %w", msg, err))
	}
}

// intercept notes each DRA method the kubelet calls (its full name carries the
// API version it chose) and marks the plugin registered once the kubelet says so.
func (d *driver) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if strings.Contains(info.FullMethod, "DRAPlugin/") {
		d.mu.Lock()
		d.method = info.FullMethod
		d.mu.Unlock()
	}
	if status, ok := req.(*registerapi.RegistrationStatus); ok {
		d.event(map[string]any{"op": "registration", "registered": status.PluginRegistered, "error": status.Error})
		if status.PluginRegistered {
			_ = os.WriteFile(filepath.Join(d.stateDir, "registered"), nil, 0o644)
		}
	}
	return handler(ctx, req)
}

// gpuUUID is stable per node and index, so a restarted plugin names the same GPUs.
func gpuUUID(node string, index int) string {
	h := sha1.Sum([]byte(fmt.Sprintf("%s/%d", node, index)))
	return fmt.Sprintf("GPU-%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

func devices(node, product string, count, groupSize int, memory resource.Quantity) []resourceapi.Device {
	out := make([]resourceapi.Device, 0, count)
	for i := 0; i < count; i++ {
		index, group := int64(i), int64(i/groupSize)
		str := func(s string) resourceapi.DeviceAttribute { return resourceapi.DeviceAttribute{StringValue: &s} }
		integer := func(v int64) resourceapi.DeviceAttribute { return resourceapi.DeviceAttribute{IntValue: &v} }
		out = append(out, resourceapi.Device{
			Name: fmt.Sprintf("gpu-%d", i),
			Attributes: map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
				"index":       integer(index),
				"uuid":        str(gpuUUID(node, i)),
				"productName": str(product),
				"pciBusID":    str(fmt.Sprintf("0000:%02x:00.0", 0x18+0x10*i)),
				// One PCIe root per NVLink group, one NUMA node per group.
				"resource.kubernetes.io/pcieRoot": str(fmt.Sprintf("pci0000:%02x", 0x10*(group+1))),
				"numaNode":                        integer(group),
				"nvlinkGroup":                     integer(group),
			},
			Capacity: map[resourceapi.QualifiedName]resourceapi.DeviceCapacity{
				"memory": {Value: memory},
			},
		})
	}
	return out
}

func ensureDeviceClass(ctx context.Context, client kubernetes.Interface) error {
	expr := fmt.Sprintf("device.driver == %q", driverName)
	class := &resourceapi.DeviceClass{
		ObjectMeta: metav1.ObjectMeta{Name: deviceClass},
		Spec: resourceapi.DeviceClassSpec{
			Selectors: []resourceapi.DeviceSelector{{CEL: &resourceapi.CELDeviceSelector{Expression: expr}}},
		},
	}
	_, err := client.ResourceV1().DeviceClasses().Create(ctx, class, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func main() {
	node := flag.String("node", "", "the node's name (its ResourceSlice pool)")
	kubeconfig := flag.String("kubeconfig", "", "credentials to publish ResourceSlices and read ResourceClaims")
	registryDir := flag.String("registry-dir", kubeletplugin.KubeletRegistryDir, "the kubelet's plugins_registry directory")
	pluginDir := flag.String("plugin-dir", "", "where the DRA socket goes (default <registry-dir>/../plugins/"+driverName+")")
	stateDir := flag.String("state-dir", "", "where prepared claims are recorded (a file per claim) and events.jsonl")
	cdiDir := flag.String("cdi-dir", "", "where to write a CDI spec per prepared claim (the runtime's cdi_spec_dirs); none when empty")
	count := flag.Int("count", 4, "how many fake GPUs")
	groupSize := flag.Int("nvlink-group-size", 2, "GPUs per NVLink group (and NUMA node)")
	product := flag.String("product", "EGPU-FAKE-GPU", "the GPUs' productName")
	memory := flag.String("memory", "16Gi", "each GPU's memory capacity")
	flag.Parse()
	if *node == "" || *kubeconfig == "" || *stateDir == "" || *count < 1 || *groupSize < 1 {
		log.Fatal("-node, -kubeconfig, -state-dir and a positive -count and -nvlink-group-size are required")
	}
	mem, err := resource.ParseQuantity(*memory)
	if err != nil {
		log.Fatalf("-memory: %v", err)
	}
	if *pluginDir == "" {
		*pluginDir = filepath.Join(filepath.Dir(*registryDir), "plugins", driverName)
	}
	dirs := []string{*registryDir, *pluginDir, filepath.Join(*stateDir, "prepared")}
	if *cdiDir != "" {
		dirs = append(dirs, *cdiDir)
	}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			log.Fatal(err)
		}
	}
	_ = os.Remove(filepath.Join(*stateDir, "registered"))

	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("kubeconfig: %v", err)
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	if err := ensureDeviceClass(ctx, client); err != nil {
		log.Fatalf("DeviceClass %s: %v", deviceClass, err)
	}

	d := &driver{node: *node, devices: map[string]string{}, stateDir: *stateDir, cdiDir: *cdiDir, cancel: cancel}
	devs := devices(*node, *product, *count, *groupSize, mem)
	for _, dev := range devs {
		d.devices[dev.Name] = *dev.Attributes["uuid"].StringValue
	}
	helper, err := kubeletplugin.Start(ctx, d,
		kubeletplugin.DriverName(driverName),
		kubeletplugin.NodeName(*node),
		kubeletplugin.KubeClient(client),
		kubeletplugin.RegistrarDirectoryPath(*registryDir),
		kubeletplugin.PluginDataDirectoryPath(*pluginDir),
		kubeletplugin.GRPCInterceptor(d.intercept),
	)
	if err != nil {
		log.Fatalf("start: %v", err)
	}
	err = helper.PublishResources(ctx, resourceslice.DriverResources{
		Pools: map[string]resourceslice.Pool{*node: {Slices: []resourceslice.Slice{{Devices: devs}}}},
	})
	if err != nil {
		log.Fatalf("publish: %v", err)
	}
	log.Printf("publishing %d %s GPUs of node %s; registration in %s", *count, *product, *node, *registryDir)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-stop:
	case <-ctx.Done():
		log.Printf("stopping: %v", context.Cause(ctx))
	}
	helper.Stop()
	if ctx.Err() != nil && context.Cause(ctx) != nil {
		os.Exit(1)
	}
}
