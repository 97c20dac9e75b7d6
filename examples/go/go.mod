module example.com/hushdemo

go 1.21
