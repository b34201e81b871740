package verify

import (
	"testing"

	"github.com/sigil-dev/sigil/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
