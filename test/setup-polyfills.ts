import '../packages/network/src/polyfills.js'
