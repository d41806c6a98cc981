// Command modproxy lists this repository's modules and serves them, at a
// version of your choosing, from a directory laid out as a Go module proxy
// (GOPROXY=file://DIR), so that a release can be tried as users will get it
// before any tag is pushed. scripts/release-check.sh and scripts/release.sh
// run it from the repository root:
//
//	go run ./scripts/modproxy modules          # "dir<TAB>module path", one a line
//	go run ./scripts/modproxy version          # the version the go.mod files require of each other
//	go run ./scripts/modproxy build -out DIR [-version vX.Y.Z]
//	go run ./scripts/modproxy bump vX.Y.Z      # require siblings at vX.Y.Z; go.work's replaces follow
//
// The published modules are those of the tracked go.mod files, except the
// tools under scripts/. build zips each module from its tracked files as
// they are in the working tree, with the rules the public proxy applies
// (golang.org/x/mod/zip: no nested modules, size limits, path rules), after
// setting every requirement on a sibling module to the version. A go.mod
// with a replace directive is an error: replacements belong in go.work.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/zip"
)

// modulePrefix is the path of the root module, and the prefix of every
// other module's path.
const modulePrefix = "github.com/hybridsession/hybridsession"

const usage = `usage:
  modproxy modules                          list the published modules: dir<TAB>path
  modproxy version                          print the version the go.mod files require of each other
  modproxy build -out DIR [-version vX.Y.Z] write a file-based module proxy serving every module
  modproxy bump vX.Y.Z                      make every go.mod require its siblings at vX.Y.Z, go.work replace them at it
`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "modproxy:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	root, err := gitOutput(".", "rev-parse", "--show-toplevel")
	if err != nil {
		return err
	}
	root = strings.TrimSpace(root)
	mods, err := listModules(root)
	if err != nil {
		return err
	}
	switch args[0] {
	case "modules":
		for _, m := range mods {
			fmt.Fprintf(stdout, "%s\t%s\n", m.dir, m.path)
		}
		return nil
	case "version":
		v, err := requiredVersion(mods)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, v)
		return nil
	case "build":
		fset := flag.NewFlagSet("build", flag.ContinueOnError)
		out := fset.String("out", "", "the proxy directory to write (required)")
		version := fset.String("version", "", "the version to serve every module at (default: the version the go.mod files require)")
		if err := fset.Parse(args[1:]); err != nil {
			return err
		}
		if *out == "" {
			return errors.New("build: -out is required")
		}
		if *version == "" {
			if *version, err = requiredVersion(mods); err != nil {
				return err
			}
		}
		if err := checkVersion(*version); err != nil {
			return err
		}
		return buildProxy(root, mods, *version, *out)
	case "bump":
		if len(args) != 2 {
			return errors.New(usage)
		}
		if err := checkVersion(args[1]); err != nil {
			return err
		}
		return bump(root, mods, args[1])
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

// checkVersion returns an error unless v can be every module's version: a
// canonical semantic version without build metadata, major v0 or v1 (v2
// and up need /v2 module paths).
func checkVersion(v string) error {
	if !semver.IsValid(v) || semver.Canonical(v) != v || semver.Build(v) != "" {
		return fmt.Errorf("%q is not a canonical semantic version such as v1.2.3", v)
	}
	if major := semver.Major(v); major != "v0" && major != "v1" {
		return fmt.Errorf("%s needs /%s module paths first", v, major)
	}
	return nil
}

// A mod is one published module.
type mod struct {
	dir   string   // slash-separated, relative to the repository root; "." for the root
	abs   string   // the directory in the working tree
	path  string   // module path
	files []string // tracked files under dir, relative to the repository root, nested modules included
	gomod *modfile.File
}

// listModules returns the published modules, the root first.
func listModules(root string) ([]*mod, error) {
	out, err := gitOutput(root, "ls-files", "-z")
	if err != nil {
		return nil, err
	}
	tracked := strings.Split(strings.TrimRight(out, "\x00"), "\x00")
	var mods []*mod
	for _, f := range tracked {
		if path.Base(f) != "go.mod" {
			continue
		}
		dir := path.Dir(f)
		if dir == "scripts" || strings.HasPrefix(dir, "scripts/") {
			continue // tools, never published
		}
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		gm, err := modfile.Parse(f, data, nil)
		if err != nil {
			return nil, err
		}
		want := modulePrefix
		if dir != "." {
			want += "/" + dir
		}
		if gm.Module == nil || gm.Module.Mod.Path != want {
			return nil, fmt.Errorf("%s: module path should be %s, the path of its directory", f, want)
		}
		if len(gm.Replace) > 0 {
			return nil, fmt.Errorf("%s: has a replace directive; replacements of sibling modules belong in go.work (go install pkg@version refuses modules with replacements)", f)
		}
		m := &mod{dir: dir, abs: filepath.Join(root, filepath.FromSlash(dir)), path: want, gomod: gm}
		prefix := dir + "/"
		for _, t := range tracked {
			if dir == "." || strings.HasPrefix(t, prefix) {
				m.files = append(m.files, t)
			}
		}
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].dir < mods[j].dir }) // "." first
	if len(mods) == 0 || mods[0].dir != "." {
		return nil, errors.New("no go.mod at the repository root")
	}
	return mods, nil
}

// sibling reports whether p is the path of one of this repository's modules.
func sibling(mods []*mod, p string) bool {
	for _, m := range mods {
		if m.path == p {
			return true
		}
	}
	return false
}

// requiredVersion returns the one version at which the go.mod files require
// sibling modules, or an error naming the requirements that disagree.
func requiredVersion(mods []*mod) (string, error) {
	seen := map[string][]string{}
	for _, m := range mods {
		for _, r := range m.gomod.Require {
			if sibling(mods, r.Mod.Path) {
				seen[r.Mod.Version] = append(seen[r.Mod.Version], path.Join(m.dir, "go.mod")+" requires "+r.Mod.Path)
			}
		}
	}
	if len(seen) == 1 {
		for v := range seen {
			return v, nil
		}
	}
	if len(seen) == 0 {
		return "", errors.New("no go.mod requires a sibling module: give -version")
	}
	var b strings.Builder
	b.WriteString("the go.mod files require siblings at different versions (run scripts/release.sh to set one):")
	for v, where := range seen {
		fmt.Fprintf(&b, "\n  %s: %s", v, strings.Join(where, ", "))
	}
	return "", errors.New(b.String())
}

// buildProxy writes DIR/<escaped path>/@v/{list,V.info,V.mod,V.zip} for
// every module.
func buildProxy(root string, mods []*mod, version, out string) error {
	stamp, err := gitOutput(root, "log", "-1", "--format=%cI")
	if err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(stamp))
	if err != nil {
		return err
	}
	for _, m := range mods {
		gomod, err := goModAt(mods, m, version)
		if err != nil {
			return err
		}
		esc, err := module.EscapePath(m.path)
		if err != nil {
			return err
		}
		vdir := filepath.Join(out, filepath.FromSlash(esc), "@v")
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			return err
		}
		info, _ := json.Marshal(struct {
			Version string
			Time    time.Time
		}{version, t.UTC()})
		if err := os.WriteFile(filepath.Join(vdir, version+".info"), info, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(vdir, version+".mod"), gomod, 0o644); err != nil {
			return err
		}
		if err := writeZip(root, m, version, gomod, filepath.Join(vdir, version+".zip")); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(vdir, "list"), []byte(version+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// goModAt returns m's go.mod with every sibling requirement set to version.
func goModAt(mods []*mod, m *mod, version string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(m.abs, "go.mod"))
	if err != nil {
		return nil, err
	}
	f, err := modfile.Parse(path.Join(m.dir, "go.mod"), data, nil)
	if err != nil {
		return nil, err
	}
	for _, r := range f.Require {
		if sibling(mods, r.Mod.Path) && r.Mod.Version != version {
			if err := f.AddRequire(r.Mod.Path, version); err != nil {
				return nil, err
			}
		}
	}
	return f.Format()
}

// bump makes every go.mod require its siblings at version, and go.work
// replace each sibling at version (instead of the version it had) with its
// directory.
func bump(root string, mods []*mod, version string) error {
	for _, m := range mods {
		gomod, err := goModAt(mods, m, version)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(m.abs, "go.mod"), gomod, 0o644); err != nil {
			return err
		}
	}
	name := filepath.Join(root, "go.work")
	data, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	wf, err := modfile.ParseWork(name, data, nil)
	if err != nil {
		return err
	}
	for _, m := range mods {
		found := false
		for _, r := range wf.Replace {
			if r.Old.Path != m.path {
				continue
			}
			// Edit the version in place, keeping the block and its comments.
			if r.Old.Version == "" || len(r.Syntax.Token) < 4 || r.Syntax.Token[len(r.Syntax.Token)-3] != r.Old.Version {
				return fmt.Errorf("go.work: cannot read the replacement of %s", m.path)
			}
			r.Syntax.Token[len(r.Syntax.Token)-3] = version
			r.Old.Version = version
			found = true
		}
		if !found {
			dir := "./"
			if m.dir != "." {
				dir += m.dir
			}
			if err := wf.AddReplace(m.path, version, dir, ""); err != nil {
				return err
			}
		}
	}
	wf.Cleanup()
	return os.WriteFile(name, modfile.Format(wf.Syntax), 0o644)
}

// writeZip writes m's module zip to dst: its tracked files as they are in
// the working tree, go.mod replaced by gomod.
func writeZip(rootDir string, m *mod, version string, gomod []byte, dst string) error {
	var files []zip.File
	for _, f := range m.files {
		rel := f
		if m.dir != "." {
			rel = strings.TrimPrefix(f, m.dir+"/")
		}
		tf := treeFile{rel: rel, abs: filepath.Join(rootDir, filepath.FromSlash(f))}
		if rel == "go.mod" {
			tf.data = gomod
		}
		if _, err := os.Lstat(tf.abs); errors.Is(err, fs.ErrNotExist) {
			continue // tracked but deleted in the working tree
		}
		files = append(files, tf)
	}
	var buf bytes.Buffer
	if err := zip.Create(&buf, module.Version{Path: m.path, Version: version}, files); err != nil {
		return err
	}
	return os.WriteFile(dst, buf.Bytes(), 0o644)
}

// treeFile is a file of the working tree, or the rewritten go.mod.
type treeFile struct {
	rel, abs string
	data     []byte // replaces the file's contents when not nil
}

func (f treeFile) Path() string { return f.rel }

func (f treeFile) Lstat() (os.FileInfo, error) {
	fi, err := os.Lstat(f.abs)
	if err != nil || f.data == nil {
		return fi, err
	}
	return sizedInfo{fi, int64(len(f.data))}, nil
}

func (f treeFile) Open() (io.ReadCloser, error) {
	if f.data != nil {
		return io.NopCloser(bytes.NewReader(f.data)), nil
	}
	return os.Open(f.abs)
}

// sizedInfo reports the size of a rewritten file.
type sizedInfo struct {
	os.FileInfo
	size int64
}

func (i sizedInfo) Size() int64 { return i.size }

func gitOutput(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}
