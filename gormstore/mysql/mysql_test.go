package mysql

import "testing"

func TestFromURL(t *testing.T) {
	cfg, err := fromURL("mysql://app:s3cret@db.example:3307/sessions?parseTime=true&clientFoundRows=true")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "app" || cfg.Passwd != "s3cret" || cfg.Net != "tcp" || cfg.Addr != "db.example:3307" ||
		cfg.DBName != "sessions" || !cfg.ParseTime || !cfg.ClientFoundRows {
		t.Errorf("fromURL = %+v", cfg)
	}
	cfg, err = fromURL("mysql://root@localhost/test")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "root" || cfg.Passwd != "" || cfg.Addr != "localhost:3306" || cfg.DBName != "test" {
		t.Errorf("fromURL without port = %+v", cfg)
	}
	if _, err := Open("mysql://root@localhost/test?parseTime=maybe"); err == nil {
		t.Error("Open accepted an invalid driver parameter")
	}
}
