// Package all compiles in every module of the repository, one blank
// import each: a module registers itself from its init function
// (modules.Register), and the server builds, starts and stops every
// registered module from its configuration section. Add a module here;
// the server (cmd/switchboard) and the tests that need the server's
// command set (mgmt/panel) import this package and change nothing. Order
// does not matter: modules.Definition.After orders them. A binary that
// wants fewer modules imports them one by one instead.
package all

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
	_ "switchboard/modules/sst"
	_ "switchboard/modules/topohiding"
	_ "switchboard/modules/uac"
)
