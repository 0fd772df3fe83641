package conflict

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Counter arithmetic: counter columns (issue 2.4) are applied as deltas, summed by the
// source's database (numeric or float8 text) and added here to a row's value as PostgreSQL
// prints it. Exact decimals stay exact: the sum keeps the larger number of fraction digits
// of its terms (numeric(12,2) stays two places). A term in exponent notation, or NaN or
// Infinity, is a floating point value: the sum is then float8 arithmetic.

// AddNumbers returns a + b, both decimal numbers as PostgreSQL prints integers, numeric,
// real and double precision values.
func AddNumbers(a, b string) (string, error) {
	if isFloatText(a) || isFloatText(b) {
		x, err := strconv.ParseFloat(a, 64)
		if err != nil {
			return "", fmt.Errorf("not a number: %q", a)
		}
		y, err := strconv.ParseFloat(b, 64)
		if err != nil {
			return "", fmt.Errorf("not a number: %q", b)
		}
		return strconv.FormatFloat(x+y, 'g', -1, 64), nil
	}
	x, ok := new(big.Rat).SetString(a)
	if !ok {
		return "", fmt.Errorf("not a number: %q", a)
	}
	y, ok := new(big.Rat).SetString(b)
	if !ok {
		return "", fmt.Errorf("not a number: %q", b)
	}
	return x.Add(x, y).FloatString(max(fractionDigits(a), fractionDigits(b))), nil
}

// IsZero reports whether the number n (as AddNumbers takes it) is zero.
func IsZero(n string) bool {
	r, ok := new(big.Rat).SetString(n)
	return ok && r.Sign() == 0
}

func isFloatText(s string) bool {
	return strings.ContainsAny(s, "eEIN") // exponent, Infinity, NaN
}

func fractionDigits(s string) int {
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return len(s) - i - 1
	}
	return 0
}
