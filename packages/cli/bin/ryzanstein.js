#!/usr/bin/env node
// Stable entry for the `ryzanstein` command: it exists before the build, so npm can link it at install.
import "../dist/bin.js";
