package coord

import "testing"

func TestLocalWakesOnlyThatDatabase(t *testing.T) {
	l := NewLocal()
	a, b := l.Changed("a"), l.Changed("b")
	l.Published("a", 2)
	select {
	case <-a:
	default:
		t.Fatal("a's waiter was not woken")
	}
	select {
	case <-b:
		t.Fatal("b's waiter was woken by a's revision")
	default:
	}
	if again := l.Changed("a"); again == a {
		t.Fatal("Changed after a wake-up returned the closed channel")
	}
	lease, fwd, err := l.Writer(t.Context(), "a")
	if err != nil || fwd != nil || !lease.Valid() {
		t.Fatalf("local writer: %v %v %v", lease, fwd, err)
	}
}
