package main

// The modules compiled into the binary: every one of the repository's
// (modules/all). A build with fewer modules imports them one by one here
// instead.
import _ "switchboard/modules/all"
