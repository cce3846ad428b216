package acc

import (
	"bufio"
	"os"
	"strconv"

	"switchboard/store"
)

// fileSettings are the file sink's keys.
type fileSettings struct {
	path    string
	format  string // csv, json
	maxSize int64  // bytes: past it the file is rotated
	keep    int    // rotated files kept: path.1 (newest) ... path.<keep>
}

// fileSink appends records to a file and rotates it by size. Used by the
// writer goroutine only.
type fileSink struct {
	cfg  fileSettings
	f    *os.File
	w    *bufio.Writer
	size int64
	line []byte
}

// write appends cdrs to the file cfg names, opening it (again, when the
// settings changed) and rotating it when the next line would pass
// maxSize, and flushes.
func (s *fileSink) write(cfg *fileSettings, cdrs []store.CDR) error {
	if s.f != nil && *cfg != s.cfg {
		s.close()
	}
	if s.f == nil {
		s.cfg = *cfg
		if err := s.open(); err != nil {
			return err
		}
	}
	for i := range cdrs {
		s.line = appendRecord(s.line[:0], s.cfg.format, &cdrs[i])
		if s.size > s.headerSize() && s.size+int64(len(s.line)) > s.cfg.maxSize {
			if err := s.rotate(); err != nil {
				return err
			}
		}
		if _, err := s.w.Write(s.line); err != nil {
			return err
		}
		s.size += int64(len(s.line))
	}
	return s.w.Flush()
}

// open opens the file for appending; a new (or empty) CSV file starts
// with the header line.
func (s *fileSink) open() error {
	f, err := os.OpenFile(s.cfg.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	s.f, s.w, s.size = f, bufio.NewWriterSize(f, 64<<10), fi.Size()
	if s.size == 0 && s.cfg.format == "csv" {
		h := []byte(csvHeaderLine)
		if _, err := s.w.Write(h); err != nil {
			s.close()
			return err
		}
		s.size = int64(len(h))
	}
	return nil
}

// headerSize is what an empty file holds: the CSV header.
func (s *fileSink) headerSize() int64 {
	if s.cfg.format == "csv" {
		return int64(len(csvHeaderLine))
	}
	return 0
}

// rotate closes the file, shifts path.1 ... path.<keep-1> up by one
// (path.<keep> is overwritten), renames the file path.1 (removes it with
// keep 0) and opens a new one.
func (s *fileSink) rotate() error {
	if err := s.w.Flush(); err != nil {
		return err
	}
	s.f.Close()
	s.f, s.w = nil, nil
	p := s.cfg.path
	if s.cfg.keep == 0 {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
		return s.open()
	}
	for i := s.cfg.keep - 1; i >= 1; i-- {
		err := os.Rename(p+"."+strconv.Itoa(i), p+"."+strconv.Itoa(i+1))
		if err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	if err := os.Rename(p, p+".1"); err != nil {
		return err
	}
	return s.open()
}

func (s *fileSink) close() {
	if s.f == nil {
		return
	}
	s.w.Flush()
	s.f.Close()
	s.f, s.w = nil, nil
}
