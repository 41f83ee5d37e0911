// mdl-dmr drives Docker Model Runner's own distribution library (github.com/docker/model-runner
// pkg/distribution) for mdl's interop tests: it packages and pushes a model the way
// `docker model package --push` does, and pulls one into Docker's own store and prints, as JSON,
// what Docker's reader resolves. It talks plain HTTP to the registry (the tests run one on loopback).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/model-runner/pkg/distribution/builder"
	"github.com/docker/model-runner/pkg/distribution/distribution"
	"github.com/docker/model-runner/pkg/distribution/oci"
	"github.com/docker/model-runner/pkg/distribution/registry"
	"github.com/docker/model-runner/pkg/distribution/types"
)

const usage = `usage:
  mdl-dmr package [--format docker|cncf] (--gguf FILE | --safetensors-dir DIR | --dduf FILE)
                  [--license FILE]... [--chat-template FILE] [--mmproj FILE] [--context-size N]
                  [--created RFC3339] REGISTRY/REPO:TAG
  mdl-dmr pull --store DIR REGISTRY/REPO:TAG`

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	if len(os.Args) < 2 {
		fail(usage)
	}
	var out any
	var err error
	switch os.Args[1] {
	case "package":
		out, err = pkg(os.Args[2:])
	case "pull":
		out, err = pull(os.Args[2:])
	default:
		fail(usage)
	}
	if err != nil {
		fail("mdl-dmr " + os.Args[1] + ": " + err.Error())
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	must(enc.Encode(out))
}

func registryClient() *registry.Client {
	return registry.NewClient(registry.WithPlainHTTP(true))
}

// pkg mirrors `docker model package --push` (cmd/cli/commands/package.go): build from the input,
// then context size, licenses, chat template and projector, then write to the registry target.
func pkg(args []string) (any, error) {
	fl := flag.NewFlagSet("package", flag.ExitOnError)
	format := fl.String("format", "", "docker or cncf (default: the library's, docker)")
	gguf := fl.String("gguf", "", "GGUF file (any shard of a split model)")
	dir := fl.String("safetensors-dir", "", "model directory")
	dduf := fl.String("dduf", "", "DDUF file")
	template := fl.String("chat-template", "", "Jinja chat template")
	mmproj := fl.String("mmproj", "", "multimodal projector")
	ctxSize := fl.Int("context-size", 0, "context size (0: not set)")
	created := fl.String("created", "", "creation time, RFC 3339 (default: now)")
	var licenses multi
	fl.Var(&licenses, "license", "license file (repeatable)")
	must(fl.Parse(args))
	if fl.NArg() != 1 {
		fail(usage)
	}
	tag := fl.Arg(0)

	var opts []builder.BuildOption
	var dirOpts []builder.DirectoryOption
	if *format != "" {
		opts = append(opts, builder.WithFormat(builder.BuildFormat(*format)))
		dirOpts = append(dirOpts, builder.WithOutputFormat(builder.BuildFormat(*format)))
	}
	if *created != "" {
		t, err := time.Parse(time.RFC3339Nano, *created)
		if err != nil {
			return nil, err
		}
		opts = append(opts, builder.WithCreated(t))
		dirOpts = append(dirOpts, builder.WithCreatedTime(t))
	}
	var b *builder.Builder
	var err error
	switch {
	case *gguf != "":
		b, err = builder.FromPath(*gguf, opts...)
	case *dduf != "":
		b, err = builder.FromPath(*dduf, opts...)
	case *dir != "":
		b, err = builder.FromDirectory(*dir, dirOpts...)
	default:
		fail(usage)
	}
	if err == nil && *ctxSize != 0 {
		b, err = b.WithContextSize(int32(*ctxSize))
	}
	for _, l := range licenses {
		if err == nil {
			b, err = b.WithLicense(l)
		}
	}
	if err == nil && *template != "" {
		b, err = b.WithChatTemplateFile(*template)
	}
	if err == nil && *mmproj != "" {
		b, err = b.WithMultimodalProjector(*mmproj)
	}
	if err != nil {
		return nil, err
	}
	target, err := registryClient().NewTarget(tag)
	if err != nil {
		return nil, err
	}
	if err := b.Build(context.Background(), target, io.Discard); err != nil {
		return nil, err
	}
	digest, err := b.Model().Digest()
	if err != nil {
		return nil, err
	}
	return map[string]string{"reference": tag, "digest": digest.String()}, nil
}

// pull stores the model in Docker's own store (DIR) and prints what Docker's reader resolves.
func pull(args []string) (any, error) {
	fl := flag.NewFlagSet("pull", flag.ExitOnError)
	store := fl.String("store", "", "Docker model store directory")
	must(fl.Parse(args))
	if fl.NArg() != 1 || *store == "" {
		fail(usage)
	}
	ref := fl.Arg(0)
	client, err := distribution.NewClient(distribution.WithStoreRootPath(*store),
		distribution.WithRegistryClient(registryClient()))
	if err != nil {
		return nil, err
	}
	if err := client.PullModel(context.Background(), ref, io.Discard); err != nil {
		return nil, err
	}
	model, err := client.GetModel(ref)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"tags": model.Tags()}
	out["id"], err = model.ID()
	cfg, err2 := model.Config()
	if err = firstErr(err, err2); err != nil {
		return nil, err
	}
	out["config"] = map[string]any{
		"type": fmt.Sprintf("%T", cfg), "format": cfg.GetFormat(), "context_size": cfg.GetContextSize(),
		"size": cfg.GetSize(), "architecture": cfg.GetArchitecture(), "parameters": cfg.GetParameters(),
		"quantization": cfg.GetQuantization(), "document": cfg}
	// Docker's accessors: the lists are empty when absent; a single file is an error when absent
	// (or repeated), reported under path_errors.
	paths, pathErrors := map[string]any{}, map[string]string{}
	var e [3]error
	paths["gguf"], e[0] = model.GGUFPaths()
	paths["safetensors"], e[1] = model.SafetensorsPaths()
	paths["dduf"], e[2] = model.DDUFPaths()
	if err := firstErr(e[:]...); err != nil {
		return nil, err
	}
	for name, get := range map[string]func() (string, error){
		"mmproj": model.MMPROJPath, "chat_template": model.ChatTemplatePath} {
		if paths[name], err = get(); err != nil {
			pathErrors[name] = err.Error()
		}
	}
	out["path_errors"] = pathErrors
	out["paths"] = paths
	// The layers as Docker's store reads them back (licenses have no accessor of their own).
	artifact, ok := model.(types.ModelArtifact)
	if !ok {
		return nil, fmt.Errorf("%T is not a ModelArtifact", model)
	}
	layers, err := artifact.Layers()
	if err != nil {
		return nil, err
	}
	var ls []map[string]any
	for _, l := range layers {
		ls = append(ls, describeLayer(l))
	}
	out["layers"] = ls
	digest, err1 := artifact.Digest()
	rawManifest, err2 := artifact.RawManifest()
	rawConfig, err3 := artifact.RawConfigFile()
	if err := firstErr(err1, err2, err3); err != nil {
		return nil, err
	}
	out["digest"], out["manifest"], out["config_blob"] = digest.String(), json.RawMessage(rawManifest), string(rawConfig)
	// The runtime bundle Docker's runner gets: model files unpacked under <root>/model.
	bundle, err := client.GetBundle(ref)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	modelDir := filepath.Join(bundle.RootDir(), "model")
	err = filepath.WalkDir(modelDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(modelDir, p)
		files[filepath.ToSlash(rel)], err = sha256File(p)
		return err
	})
	if err != nil {
		return nil, err
	}
	out["bundle"] = map[string]any{
		"root": bundle.RootDir(), "gguf": bundle.GGUFPath(), "safetensors": bundle.SafetensorsPath(),
		"dduf": bundle.DDUFPath(), "chat_template": bundle.ChatTemplatePath(), "mmproj": bundle.MMPROJPath(),
		"runtime_config": bundle.RuntimeConfig(), "files": files}
	return out, nil
}

func describeLayer(l oci.Layer) map[string]any {
	mt, _ := l.MediaType()
	d, _ := l.Digest()
	out := map[string]any{"media_type": mt, "digest": d.String()}
	if dp, ok := l.(interface{ GetDescriptor() oci.Descriptor }); ok {
		out["filepath"] = dp.GetDescriptor().Annotations[types.AnnotationFilePath]
	}
	rc, err := l.Uncompressed()
	if err == nil {
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		out["sha256"] = hex.EncodeToString(h.Sum(nil))
	}
	if err != nil {
		out["error"] = err.Error()
	}
	return out
}

func sha256File(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), err
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func must(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(2)
}
