// Loaded with --import into every process the benchmark starts: when the
// runner dies without a chance to kill its children (SIGKILL, OOM), the child
// is re-parented, and then it ends itself instead of lingering on a port.

const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(1);
}, 500).unref();
