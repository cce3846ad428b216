package dialog

import (
	"testing"

	"switchboard/modules/dispatcher"
	"switchboard/modules/drouting"
	"switchboard/modules/registrar"
	"switchboard/txn"
)

// TestSlotsApart: the per-transaction value the dialog module keeps is
// none of the other modules', so one route set can use them all.
func TestSlotsApart(t *testing.T) {
	if SlotDialog < 0 || SlotDialog >= txn.NumValues {
		t.Fatalf("SlotDialog %d outside 0..%d", SlotDialog, txn.NumValues-1)
	}
	for _, other := range []int{registrar.SlotAOR, registrar.SlotNextQ, dispatcher.SlotSet, dispatcher.SlotDest, drouting.SlotCall} {
		if SlotDialog == other {
			t.Fatalf("dialog.SlotDialog (%d) is another module's slot", SlotDialog)
		}
	}
}
