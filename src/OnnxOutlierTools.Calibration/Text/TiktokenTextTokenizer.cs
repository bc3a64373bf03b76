using Microsoft.ML.Tokenizers;

namespace OnnxOutlierTools.Calibration.Text;

/// <summary>
/// A tiktoken ranks file (base64 token, rank per line) through Microsoft.ML.Tokenizers'
/// <see cref="TiktokenTokenizer"/>. The file does not say which pre-tokenizer regex and special tokens go
/// with it, so the encoding is taken from the file name (r50k_base, p50k_base, p50k_edit, cl100k_base,
/// o200k_base, gpt2) or else from the number of ranks, and refused when neither tells.
/// </summary>
internal sealed class TiktokenTextTokenizer : TextTokenizer
{
    public const long MaxBytes = 64L << 20;

    // Encoding name -> a model name Microsoft.ML.Tokenizers maps to that encoding (its regex and specials).
    private static readonly (string Encoding, string Model, int Ranks)[] Encodings =
    [
        ("r50k_base", "davinci", 50256), ("p50k_base", "text-davinci-003", 50280), ("p50k_edit", "text-davinci-edit-001", 50280),
        ("cl100k_base", "gpt-4", 100256), ("o200k_base", "gpt-4o", 199998), ("gpt2", "gpt2", 50256),
    ];

    private readonly TiktokenTokenizer _tiktoken;
    private readonly int _vocabSize;
    // Token bytes by rank, read from the file (the library keeps its own maps internal); keys as Latin-1 strings.
    private readonly Dictionary<int, byte[]> _bytes;
    private readonly Dictionary<string, int> _ranks;

    private TiktokenTextTokenizer(string path, TiktokenTokenizer tiktoken, string encoding, Dictionary<int, byte[]> bytes) : base(path)
    {
        _tiktoken = tiktoken;
        Encoding = encoding;
        _bytes = bytes;
        _ranks = bytes.ToDictionary(p => System.Text.Encoding.Latin1.GetString(p.Value), p => p.Key, StringComparer.Ordinal);
        _vocabSize = Math.Max(bytes.Keys.Max(), tiktoken.SpecialTokens?.Values.DefaultIfEmpty(-1).Max() ?? -1) + 1;
    }

    private static Dictionary<int, byte[]> ReadRanks(string path)
    {
        var map = new Dictionary<int, byte[]>();
        int line = 0;
        foreach (string text in File.ReadLines(path))
        {
            line++;
            if (text.Length == 0) continue;
            string[] parts = text.Split(' ');
            if (parts.Length != 2 || !int.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int rank))
                throw new CalibrationInputException(path, $"line {line} is not \"<base64 token> <rank>\"");
            try { map[rank] = Convert.FromBase64String(parts[0]); }
            catch (FormatException) { throw new CalibrationInputException(path, $"line {line}: the token is not base64"); }
        }
        if (map.Count == 0) throw new CalibrationInputException(path, "holds no ranks: not a tiktoken file");
        return map;
    }

    public override string Kind => TokenizerKinds.Tiktoken;
    public override int VocabSize => _vocabSize;
    /// <summary>The encoding the file was taken to be (r50k_base, cl100k_base, ...).</summary>
    public string Encoding { get; }
    internal override bool FormatPrependsBos => false;

    public static TiktokenTextTokenizer Load(string path)
    {
        var facts = OnnxOutlierTools.IO.FileFacts.Of(path);
        if (facts.Length > MaxBytes) throw new CalibrationInputException(path, $"{facts.Length} bytes: too large for a tiktoken file");
        try
        {
            string name = Path.GetFileNameWithoutExtension(path).ToLowerInvariant();
            var byName = Encodings.FirstOrDefault(e => name == e.Encoding || name.StartsWith(e.Encoding + ".", StringComparison.Ordinal));
            string encoding, model;
            string reason;
            if (byName.Encoding is not null) { (encoding, model, reason) = (byName.Encoding, byName.Model, "file name"); }
            else
            {
                int ranks = ReadRanks(path).Count;
                var bySize = Encodings.Where(e => e.Ranks == ranks && e.Encoding != "gpt2" && e.Encoding != "p50k_edit").ToArray();
                if (bySize.Length != 1)
                    throw new CalibrationInputException(path, $"cannot tell which tiktoken encoding these {ranks} ranks are (name the file r50k_base.tiktoken, p50k_base.tiktoken, cl100k_base.tiktoken or o200k_base.tiktoken)");
                (encoding, model, reason) = (bySize[0].Encoding, bySize[0].Model, $"{ranks} ranks");
            }
            using var stream = File.OpenRead(path);
            var tokenizer = new TiktokenTextTokenizer(path, TiktokenTokenizer.CreateForModel(model, stream), encoding, ReadRanks(path));
            tokenizer.AddNote($"{path}: tiktoken encoding {encoding} (from the {reason})");
            return tokenizer;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { throw new CalibrationInputException(path, $"cannot be read ({ex.Message})", ex); }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new CalibrationInputException(path, $"is not a tiktoken file Microsoft.ML.Tokenizers can read ({OnnxOutlierTools.Text.Printable.FirstLine(ex.Message)})", ex);
        }
    }

    public override int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _tiktoken.EncodeToIds(text).ToArray();
    }

    public override string Decode(int id)
    {
        CheckId(id);
        if (_bytes.TryGetValue(id, out var bytes)) return TokenBytes.Display(bytes);
        return _tiktoken.SpecialTokens?.FirstOrDefault(p => p.Value == id).Key ?? "";
    }

    public override int? TokenToId(string token)
    {
        if (_tiktoken.SpecialTokens is { } specials && specials.TryGetValue(token, out int special)) return special;
        return _ranks.TryGetValue(System.Text.Encoding.Latin1.GetString(System.Text.Encoding.UTF8.GetBytes(token)), out int id) ? id : null;
    }
}
