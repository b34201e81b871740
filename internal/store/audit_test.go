package store_test

import (
	"reflect"
	"testing"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
)

func TestAuditTileHeightIsAudits(t *testing.T) {
	if store.AuditTileHeight != audit.TileHeight {
		t.Fatalf("AuditTileHeight = %d, audit.TileHeight = %d", store.AuditTileHeight, audit.TileHeight)
	}
}

func TestCompletedAuditNodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		size uint64
		want []store.AuditNode
	}{
		{"empty log", 0, nil},
		{"first entry", 1, nil},
		{"last of a tile", 255, nil},
		{"first tile", 256, []store.AuditNode{{Level: 8, Index: 0}}},
		{"third tile", 3 * 256, []store.AuditNode{{Level: 8, Index: 2}}},
		{"level 16", 1 << 16, []store.AuditNode{{Level: 8, Index: 255}, {Level: 16, Index: 0}}},
		{"level 24", 3 << 24, []store.AuditNode{{Level: 8, Index: 3<<16 - 1}, {Level: 16, Index: 3<<8 - 1}, {Level: 24, Index: 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := store.CompletedAuditNodes(tc.size); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("CompletedAuditNodes(%d) = %v, want %v", tc.size, got, tc.want)
			}
		})
	}
	start, end := store.AuditNode{Level: 16, Index: 2}.Children()
	if start != 512 || end != 768 {
		t.Fatalf("Children of node 2 at level 16 = [%d, %d), want [512, 768)", start, end)
	}
}
