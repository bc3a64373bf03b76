using System.Buffers.Binary;
using System.Text;

namespace OnnxOutlierTools.Import;

/// <summary>
/// llama2.c's tokenizer (tokenizer.bin / tok512.bin): an int32 max_token_length, then per token a
/// float32 merge score, an int32 byte length and the piece's bytes. <see cref="Encode"/> and
/// <see cref="Decode(int, int)"/> are ports of run.c's encode and decode: BOS 1, EOS 2, a dummy-prefix
/// " " token, UTF-8 code points looked up whole with a byte fallback (byte b is id b + 3), then greedy
/// merges of the adjacent pair whose concatenation is the highest-scoring piece (leftmost on ties).
/// </summary>
public sealed class Llama2cTokenizer
{
    public const int Bos = 1;
    public const int Eos = 2;

    private readonly byte[][] _pieces;
    private readonly float[] _scores;
    // Pieces as Latin-1 strings (one char per byte), so byte sequences can be dictionary keys.
    private readonly Dictionary<string, int> _lookup;

    private Llama2cTokenizer(byte[][] pieces, float[] scores, int maxTokenLength)
    {
        _pieces = pieces;
        _scores = scores;
        MaxTokenLength = maxTokenLength;
        _lookup = new Dictionary<string, int>(pieces.Length, StringComparer.Ordinal);
        for (int i = 0; i < pieces.Length; i++) _lookup.TryAdd(Encoding.Latin1.GetString(pieces[i]), i);
    }

    public int VocabSize => _pieces.Length;
    public int MaxTokenLength { get; }

    /// <summary>The raw bytes of token <paramref name="id"/>'s piece.</summary>
    public ReadOnlySpan<byte> Piece(int id) => _pieces[id];
    public float Score(int id) => _scores[id];

    /// <summary>Loads a tokenizer file. <paramref name="vocabSize"/> is the model's vocabulary size
    /// (the file does not store it); null reads entries to the end of the file. The file must hold
    /// exactly that many entries.</summary>
    public static Llama2cTokenizer Load(string path, int? vocabSize = null)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new Llama2cFormatException(path, $"cannot read: {ex.Message}");
        }
        return Read(bytes, path, vocabSize);
    }

    public static Llama2cTokenizer Read(ReadOnlySpan<byte> data, string name, int? vocabSize = null)
    {
        if (data.Length < 4) throw new Llama2cFormatException(name, "too short for a llama2.c tokenizer (no max_token_length)");
        int maxLen = BinaryPrimitives.ReadInt32LittleEndian(data);
        if (maxLen <= 0 || maxLen > 1 << 16) throw new Llama2cFormatException(name, $"max_token_length {maxLen} is not plausible; not a llama2.c tokenizer");
        var pieces = new List<byte[]>();
        var scores = new List<float>();
        int offset = 4;
        while (offset < data.Length && (vocabSize is null || pieces.Count < vocabSize))
        {
            if (data.Length - offset < 8)
                throw new Llama2cFormatException(name, $"entry {pieces.Count} at byte {offset} is truncated");
            float score = BinaryPrimitives.ReadSingleLittleEndian(data.Slice(offset));
            int len = BinaryPrimitives.ReadInt32LittleEndian(data.Slice(offset + 4));
            offset += 8;
            if (len < 0 || len > maxLen || len > data.Length - offset)
                throw new Llama2cFormatException(name, $"entry {pieces.Count} at byte {offset - 8} has length {len} (max_token_length {maxLen}, {data.Length - offset} bytes left)");
            pieces.Add(data.Slice(offset, len).ToArray());
            scores.Add(score);
            offset += len;
        }
        if (vocabSize is int n && pieces.Count < n)
            throw new Llama2cFormatException(name, $"holds {pieces.Count} tokens, expected {n}");
        if (offset != data.Length)
            throw new Llama2cFormatException(name, $"has {data.Length - offset} bytes after the {pieces.Count} expected tokens");
        if (pieces.Count <= Eos) throw new Llama2cFormatException(name, $"holds only {pieces.Count} tokens");
        return new Llama2cTokenizer(pieces.ToArray(), scores.ToArray(), maxLen);
    }

    /// <summary>Id of the piece with exactly these bytes, or -1 (run.c str_lookup).</summary>
    public int Lookup(ReadOnlySpan<byte> piece) => _lookup.TryGetValue(Encoding.Latin1.GetString(piece), out int id) ? id : -1;

    /// <summary>run.c encode: [BOS] + dummy prefix " " (when the text is not empty) + code points with byte
    /// fallback, then greedy highest-score merges (leftmost pair on ties) [+ EOS].</summary>
    public int[] Encode(string text, bool bos = true, bool eos = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        byte[] utf8 = Encoding.UTF8.GetBytes(text);
        var tokens = new List<int>(utf8.Length + 3);
        if (bos) tokens.Add(Bos);
        if (utf8.Length > 0)
        {
            int dummy = Lookup(" "u8);
            if (dummy < 0) throw new InvalidOperationException("the vocabulary has no \" \" piece for the dummy prefix");
            tokens.Add(dummy);
        }

        // Code points: a run of a lead byte and up to 3 continuation bytes (run.c's str_len < 4 rule).
        int start = 0;
        for (int i = 0; i < utf8.Length; i++)
        {
            bool nextIsContinuation = i + 1 < utf8.Length && (utf8[i + 1] & 0xC0) == 0x80;
            if ((utf8[i] & 0xC0) != 0x80) start = i;
            int length = i - start + 1;
            if (nextIsContinuation && length < 4) continue;
            int id = Lookup(utf8.AsSpan(start, length));
            if (id >= 0) tokens.Add(id);
            else for (int k = start; k <= i; k++) tokens.Add(utf8[k] + 3);
            start = i + 1;
        }

        // Merges: pieces as Latin-1 strings so concatenation is byte concatenation.
        var pieces = tokens.Select(t => Encoding.Latin1.GetString(_pieces[t])).ToList();
        while (true)
        {
            float bestScore = -1e10f;
            int bestId = -1, bestIndex = -1;
            for (int i = 0; i < tokens.Count - 1; i++)
            {
                if (_lookup.TryGetValue(string.Concat(pieces[i], pieces[i + 1]), out int id) && _scores[id] > bestScore)
                {
                    bestScore = _scores[id];
                    bestId = id;
                    bestIndex = i;
                }
            }
            if (bestIndex < 0) break;
            tokens[bestIndex] = bestId;
            pieces[bestIndex] = string.Concat(pieces[bestIndex], pieces[bestIndex + 1]);
            tokens.RemoveAt(bestIndex + 1);
            pieces.RemoveAt(bestIndex + 1);
        }
        if (eos) tokens.Add(Eos);
        return tokens.ToArray();
    }

    /// <summary>run.c decode: the bytes token <paramref name="token"/> contributes after
    /// <paramref name="previous"/>: a leading space is dropped right after BOS, and a piece "&lt;0xXX&gt;"
    /// stands for the raw byte XX.</summary>
    public byte[] DecodeBytes(int previous, int token)
    {
        ReadOnlySpan<byte> piece = _pieces[token];
        if (previous == Bos && piece.Length > 0 && piece[0] == (byte)' ') piece = piece[1..];
        if (TryParseByte(piece, out byte b)) return [b];
        return piece.ToArray();
    }

    /// <summary><see cref="DecodeBytes"/> as UTF-8 text (a lone byte of a multi-byte character decodes to U+FFFD;
    /// decode whole sequences with <see cref="Decode(IEnumerable{int}, int)"/> to avoid that).</summary>
    public string Decode(int previous, int token) => Encoding.UTF8.GetString(DecodeBytes(previous, token));

    /// <summary>Decodes a token sequence, each token after its predecessor (the first after
    /// <paramref name="previous"/>), joining the bytes before UTF-8 decoding.</summary>
    public string Decode(IEnumerable<int> tokens, int previous = -1)
    {
        var bytes = new List<byte>();
        foreach (int t in tokens)
        {
            bytes.AddRange(DecodeBytes(previous, t));
            previous = t;
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    // sscanf(piece, "<0x%02hhX>", &byte) == 1: "<0x" then one or two hex digits.
    private static bool TryParseByte(ReadOnlySpan<byte> piece, out byte value)
    {
        value = 0;
        if (piece.Length < 4 || piece[0] != '<' || piece[1] != '0' || piece[2] != 'x') return false;
        int digits = 0, v = 0;
        for (int i = 3; i < piece.Length && digits < 2; i++, digits++)
        {
            int h = HexValue(piece[i]);
            if (h < 0) break;
            v = v * 16 + h;
        }
        if (digits == 0) return false;
        value = (byte)v;
        return true;

        static int HexValue(byte c) => c switch
        {
            >= (byte)'0' and <= (byte)'9' => c - '0',
            >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
            >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
            _ => -1,
        };
    }
}
