// Package archtest holds no code of its own: its tests hold the code to
// the shape docs/architecture.md gives it. The package map there names
// every package `go list` finds, and its arrows are the imports, no more
// and no fewer (TestPackageMapMatchesGoList); the imports the map rules
// out are absent even indirectly (TestForbiddenImports); and no function
// of the product code is longer than MaxFuncLines
// (TestNoFunctionIsTooLong).
package archtest
