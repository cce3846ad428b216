package main

// The modules compiled into the binary, one blank import each: a module
// registers itself from its init function (modules.Register), and the
// server builds, starts and stops every registered module from its
// configuration section. Add a module here; nothing else in
// cmd/switchboard changes. Order does not matter: modules.Definition.After
// orders them.
import (
	_ "switchboard/modules/acc"
	_ "switchboard/modules/aliases"
	_ "switchboard/modules/auth"
	_ "switchboard/modules/authban"
	_ "switchboard/modules/dialog"
	_ "switchboard/modules/dialplan"
	_ "switchboard/modules/dispatcher"
	_ "switchboard/modules/drouting"
	_ "switchboard/modules/events"
	_ "switchboard/modules/fraud"
	_ "switchboard/modules/groups"
	_ "switchboard/modules/nathelper"
	_ "switchboard/modules/permissions"
	_ "switchboard/modules/pike"
	_ "switchboard/modules/ratelimit"
	_ "switchboard/modules/registrar"
	_ "switchboard/modules/rtpengine"
	_ "switchboard/modules/scanner"
	_ "switchboard/modules/siptrace"
	_ "switchboard/modules/topohiding"
	_ "switchboard/modules/uac"
)
