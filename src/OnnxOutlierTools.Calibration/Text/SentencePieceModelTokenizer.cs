using Microsoft.ML.Tokenizers;

namespace OnnxOutlierTools.Calibration.Text;

/// <summary>A SentencePiece tokenizer.model (BPE as in Llama 2, or Unigram) through Microsoft.ML.Tokenizers'
/// <see cref="SentencePieceTokenizer"/>, which reads the protobuf model with its normalizer settings
/// (dummy prefix, whitespace escaping, byte fallback, precompiled character map). One correction on top:
/// a run of unknown characters gives one unknown id, as SentencePiece itself does.</summary>
internal sealed class SentencePieceModelTokenizer : TextTokenizer
{
    /// <summary>SentencePiece models are a few MB even for 250k-token vocabularies.</summary>
    public const long MaxBytes = 256L << 20;

    private readonly SentencePieceTokenizer _sp;
    private readonly string[] _pieces;
    private readonly Dictionary<string, int> _ids;

    private SentencePieceModelTokenizer(string path, SentencePieceTokenizer sp) : base(path)
    {
        _sp = sp;
        _ids = sp.Vocabulary.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
        foreach (var (token, id) in sp.SpecialTokens ?? new Dictionary<string, int>()) _ids.TryAdd(token, id);
        _pieces = new string[_ids.Values.Max() + 1];
        foreach (var (token, id) in _ids) _pieces[id] ??= token;
        for (int i = 0; i < _pieces.Length; i++) _pieces[i] ??= "";
    }

    public override string Kind => TokenizerKinds.SentencePiece;
    public override int VocabSize => _pieces.Length;
    internal override bool FormatPrependsBos => true; // Llama-family models; the loader requires a defined BOS id too.

    public static SentencePieceModelTokenizer Load(string path)
    {
        var facts = OnnxOutlierTools.IO.FileFacts.Of(path);
        if (facts.Length > MaxBytes) throw new CalibrationInputException(path, $"{facts.Length} bytes: too large for a SentencePiece model");
        try
        {
            using var stream = File.OpenRead(path);
            return new SentencePieceModelTokenizer(path, SentencePieceTokenizer.Create(stream, false, false));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { throw new CalibrationInputException(path, $"cannot be read ({ex.Message})", ex); }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or FormatException or NotSupportedException or InvalidDataException or Google.Protobuf.InvalidProtocolBufferException)
        {
            throw new CalibrationInputException(path, $"is not a SentencePiece model Microsoft.ML.Tokenizers can read ({OnnxOutlierTools.Text.Printable.FirstLine(ex.Message)})", ex);
        }
    }

    public override int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = _sp.EncodeToIds(text, addBeginningOfSentence: false, addEndOfSentence: false);
        // SentencePiece (spm_encode) emits one unknown token for a run of unknown characters; the library one each.
        int unk = _sp.UnknownId;
        var fused = new List<int>(ids.Count);
        foreach (int id in ids)
            if (!(id == unk && fused.Count > 0 && fused[^1] == unk)) fused.Add(id);
        return fused.ToArray();
    }

    public override string Decode(int id)
    {
        CheckId(id);
        return TokenBytes.DisplayMetaspacePiece(_pieces[id]);
    }

    public override int? TokenToId(string token) => _ids.TryGetValue(token, out int id) ? id : null;

    internal override SpecialTokenIds FormatSpecials()
    {
        int? Valid(int id) => id >= 0 && id < _pieces.Length ? id : null;
        return new(Valid(_sp.BeginningOfSentenceId), Valid(_sp.EndOfSentenceId), null, null, First("<pad>"), Valid(_sp.UnknownId));
    }
}
