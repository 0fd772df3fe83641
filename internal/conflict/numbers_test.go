package conflict

import "testing"

func TestAddNumbers(t *testing.T) {
	for _, c := range []struct{ a, b, want string }{
		{"5", "-3", "2"},
		{"-5", "3", "-2"},
		{"0", "0", "0"},
		{"9223372036854775807", "1", "9223372036854775808"},
		{"1.50", "2.5", "4.00"},
		{"1.5", "-1.25", "0.25"},
		{"-0.01", "0.01", "0.00"},
		{"1e+20", "1", "1e+20"},
		{"1.5e-05", "1.5e-05", "3e-05"},
		{"2.5", "0.5", "3.0"},
	} {
		got, err := AddNumbers(c.a, c.b)
		if err != nil || got != c.want {
			t.Errorf("AddNumbers(%q, %q) = %q, %v; want %q", c.a, c.b, got, err, c.want)
		}
	}
	for _, bad := range [][2]string{{"x", "1"}, {"1", ""}, {"1e5", "y"}} {
		if got, err := AddNumbers(bad[0], bad[1]); err == nil {
			t.Errorf("AddNumbers(%q, %q) = %q, want an error", bad[0], bad[1], got)
		}
	}
	if !IsZero("0.00") || !IsZero("-0") || IsZero("0.01") || IsZero("x") {
		t.Error("IsZero")
	}
}

func TestBuildAdd(t *testing.T) {
	cols := []string{"id", "bal", "note"}
	vs := map[string][]Field{
		"a": {{Text: "1"}, {Text: "10"}, {Text: "from a"}},
		"b": {{Text: "1"}, {Text: "7"}, {Text: "from b"}},
	}
	row, err := Decision{Winner: "a", Add: map[string]string{"bal": "-3"}}.Build(cols, vs)
	if err != nil || row[1].Text != "7" || row[2].Text != "from a" {
		t.Fatalf("Build = %v, %v", row, err)
	}
	vs["a"][1] = Field{Null: true}
	if row, err = (Decision{Winner: "a", Add: map[string]string{"bal": "4"}}).Build(cols, vs); err != nil || row[1] != (Field{Text: "4"}) {
		t.Fatalf("Build from NULL = %v, %v", row, err)
	}
	if _, err := (Decision{Winner: "a", Add: map[string]string{"bal": "4"}, Values: map[string]Field{"bal": {Text: "1"}}}).Build(cols, vs); err == nil ||
		err.Error() != `cannot build the row: column "bal" has both a value and a delta` {
		t.Fatalf("Build with a value and a delta: %v", err)
	}
	if d := (Decision{Winner: "a", Add: map[string]string{"bal": "4"}}); d.Whole() {
		t.Fatal("a decision adding to a counter is not a whole row")
	}
}
