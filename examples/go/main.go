package main

import (
	"fmt"

	"example.com/hushdemo/stats"
)

func main() {
	fmt.Println(stats.Mean([]float64{1, 2, 3}))
}
