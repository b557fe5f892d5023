module local/egpu-pause

go 1.22
