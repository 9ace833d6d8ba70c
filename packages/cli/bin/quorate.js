#!/usr/bin/env node
// The `quorate` command: the compiled CLI (npm run build writes dist/).
import '../dist/main.js'
