package data

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
)

// CleanEmail turns one raw RFC 822 message (as the SpamAssassin corpus stores
// them, with an mbox "From " line first) into the text a model should see:
//
//	Subject: <decoded subject>
//
//	<body>
//
// Every other header (Received, Message-Id, addresses, X-*) is dropped: they
// are long, repetitive and full of personal addresses. The body is decoded
// (quoted-printable, base64; Latin-1 and Windows-1252 converted to UTF-8);
// of a multipart message only the text/plain parts are kept, or the
// text/html parts turned into text when there is no plain one; attachments
// are dropped. A message that does not parse keeps its raw body.
func CleanEmail(raw string) string {
	if strings.HasPrefix(raw, "From ") {
		if i := strings.IndexByte(raw, '\n'); i >= 0 {
			raw = raw[i+1:]
		}
	}
	raw = strings.ReplaceAll(raw, "\r\n", "\n")
	msg, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		if i := strings.Index(raw, "\n\n"); i >= 0 {
			return dropEncodedLines(raw[i+2:])
		}
		return dropEncodedLines(raw)
	}
	subject := decodeHeader(msg.Header.Get("Subject"))
	body, _ := io.ReadAll(msg.Body)
	text := dropEncodedLines(mimeText(textproto.MIMEHeader(msg.Header), body, 0))
	if subject == "" {
		return text
	}
	return "Subject: " + subject + "\n\n" + text
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

func decodeHeader(s string) string {
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		s = d
	}
	return strings.Join(strings.Fields(s), " ")
}

// charsetReader converts the single-byte charsets common in the corpus.
func charsetReader(charset string, in io.Reader) (io.Reader, error) {
	b, err := io.ReadAll(in)
	if err != nil {
		return nil, err
	}
	return strings.NewReader(toUTF8(b, charset)), nil
}

// toUTF8 decodes b from charset: UTF-8 and ASCII as they are, the Latin-1
// family byte by byte; other charsets (GB2312, KOI8-R, ...) yield "", so that
// their text is dropped rather than turned into mojibake.
func toUTF8(b []byte, charset string) string {
	switch strings.ToLower(strings.Trim(charset, `"' `)) {
	case "", "us-ascii", "ascii", "utf-8", "utf8":
		return string(b)
	case "iso-8859-1", "iso8859-1", "latin1", "latin-1", "windows-1252", "cp1252", "iso-8859-15":
		return latin1ToUTF8(b)
	}
	return ""
}

var base64LineRE = regexp.MustCompile(`(?m)^[A-Za-z0-9+/]{40,}={0,2}\n?`)

// dropEncodedLines removes lines that are base64 data (left in a body by a
// message whose MIME structure did not parse).
func dropEncodedLines(s string) string {
	return base64LineRE.ReplaceAllString(s, "")
}

// mimeText extracts the readable text of one MIME entity.
func mimeText(h textproto.MIMEHeader, body []byte, depth int) string {
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		mt, params = "text/plain", map[string]string{}
	}
	body = decodeTransfer(h.Get("Content-Transfer-Encoding"), body)
	switch {
	case strings.HasPrefix(mt, "multipart/") && depth < 8 && params["boundary"] != "":
		var plain, htmls []string
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				break
			}
			pb, err := io.ReadAll(p)
			if err != nil {
				break
			}
			pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
			if pt == "" {
				pt = "text/plain"
			}
			switch {
			case pt == "text/html":
				htmls = append(htmls, mimeText(p.Header, pb, depth+1))
			case pt == "text/plain" || strings.HasPrefix(pt, "multipart/") || pt == "message/rfc822":
				if t := mimeText(p.Header, pb, depth+1); strings.TrimSpace(t) != "" {
					plain = append(plain, t)
				}
			}
		}
		if len(plain) == 0 {
			plain = htmls
		}
		return strings.Join(plain, "\n\n")
	case mt == "message/rfc822":
		return CleanEmail(string(body))
	case mt == "text/html":
		return HTMLToText(toUTF8(body, params["charset"]))
	case strings.HasPrefix(mt, "text/"):
		s := toUTF8(body, params["charset"])
		if looksLikeHTML(s) { // spam often sends HTML as text/plain
			return HTMLToText(s)
		}
		return s
	}
	return ""
}

func decodeTransfer(enc string, body []byte) []byte {
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case "quoted-printable":
		if b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body))); err == nil || len(b) > 0 {
			return b
		}
	case "base64":
		var clean bytes.Buffer
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			clean.Write(bytes.TrimSpace(sc.Bytes()))
		}
		s := strings.TrimRight(clean.String(), "=")
		if b, err := base64.RawStdEncoding.DecodeString(s); err == nil {
			return b
		}
	}
	return body
}

func looksLikeHTML(s string) bool {
	head := strings.ToLower(s[:min(len(s), 2048)])
	return strings.Contains(head, "<html") || strings.Contains(head, "<body") ||
		(strings.Count(head, "<br") >= 3) || strings.Contains(head, "<table")
}

// emailID names a message by its folder and file, e.g. "spam-2/00001".
func emailID(group, file string) string {
	return fmt.Sprintf("%s/%s", group, strings.SplitN(file, ".", 2)[0])
}
